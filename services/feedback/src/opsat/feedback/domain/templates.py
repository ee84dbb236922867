"""Survey templates (handbook 4.1): weighted dimensions rated 1-5, an NPS question 0-10 and free text, with
Chinese and English labels; versioned (a survey keeps the version it was issued with); optionally anonymous
(the score counts, the respondent's name is withheld from staff views).

The shipped `default` template is version 1 of its id, with DOMAIN.md's dimensions and weights.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from opsat.common.domain import Conflict, DomainEvent, InvalidInput
from opsat.feedback.domain import events as ev

TEMPLATE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
DIMENSION_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_DIMENSIONS = 12
DEFAULT_TEMPLATE_ID = "default"


@dataclass(frozen=True)
class Dimension:
    key: str
    weight: int  # per cent
    label_zh: str
    label_en: str


@dataclass(frozen=True)
class Template:
    template_id: str
    version: int
    dimensions: tuple[Dimension, ...]
    nps_label_zh: str = "您有多大可能向同事推荐我们的运维服务？"
    nps_label_en: str = "How likely are you to recommend our IT operations service to a colleague?"
    comment_label_zh: str = "其他意见或建议"
    comment_label_en: str = "Anything else you would like to tell us"
    anonymous: bool = False
    comment_required_below: float = 60.0  # a response scoring below this must say why
    follow_up_below: float = 60.0  # a response scoring below this opens a follow-up (5.4)
    max_comment_chars: int = 2000

    @property
    def weights(self) -> dict[str, int]:
        return {d.key: d.weight for d in self.dimensions}

    def to_spec(self) -> dict[str, Any]:
        spec = asdict(self)
        spec["dimensions"] = [asdict(d) for d in self.dimensions]
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Template:
        values = dict(spec)
        values["dimensions"] = tuple(Dimension(**d) for d in spec["dimensions"])
        return cls(**values)


DEFAULT_TEMPLATE = Template(DEFAULT_TEMPLATE_ID, 1, (
    Dimension("response_speed", 20, "响应速度", "Response speed"),
    Dimension("professionalism", 25, "专业能力", "Professionalism"),
    Dimension("attitude", 20, "服务态度", "Attitude and communication"),
    Dimension("resolution", 35, "解决效果", "Resolution quality"),
))


def shipped(template_id: str) -> Template | None:
    return DEFAULT_TEMPLATE if template_id == DEFAULT_TEMPLATE_ID else None


def _label(value: str, field: str) -> str:
    if not value.strip() or len(value) > 300:
        raise InvalidInput("a label is 1-300 characters", field=field)
    return value


def build(template_id: str, version: int, dimensions: list[dict[str, Any]], **options: Any) -> Template:
    """A template from an administrator's input, every rule checked; the error names the field at fault."""
    if not TEMPLATE_ID.match(template_id):
        raise InvalidInput("a template id is a slug: a-z, 0-9 and '-', at most 31 characters", field="template_id")
    if not 1 <= len(dimensions) <= MAX_DIMENSIONS:
        raise InvalidInput(f"a template has 1-{MAX_DIMENSIONS} dimensions", field="dimensions")
    built = []
    for i, d in enumerate(dimensions):
        key = d.get("key", "")
        if not DIMENSION_KEY.match(key):
            raise InvalidInput("a dimension key is a-z, 0-9 and '_', starting with a letter",
                               field=f"dimensions.{i}.key")
        if key in {b.key for b in built}:
            raise InvalidInput(f"dimension {key!r} appears twice", field=f"dimensions.{i}.key")
        weight = d.get("weight")
        if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= 100:
            raise InvalidInput("a weight is a whole per cent, 1-100", field=f"dimensions.{i}.weight")
        built.append(Dimension(key, weight, _label(d.get("label_zh", ""), f"dimensions.{i}.label_zh"),
                               _label(d.get("label_en", ""), f"dimensions.{i}.label_en")))
    total = sum(d.weight for d in built)
    if total != 100:
        raise InvalidInput(f"the weights sum to {total} %, not 100 %", field="dimensions")
    for name in ("nps_label_zh", "nps_label_en", "comment_label_zh", "comment_label_en"):
        if name in options:
            _label(options[name], name)
    for name in ("comment_required_below", "follow_up_below"):
        if name in options and not 0 <= options[name] <= 100:
            raise InvalidInput("a score threshold is 0-100", field=name)
    if "max_comment_chars" in options and not 1 <= options["max_comment_chars"] <= 10_000:
        raise InvalidInput("max_comment_chars is 1-10000", field="max_comment_chars")
    return Template(template_id, version, tuple(built), **options)


# --- the template stream ----------------------------------------------------------------------------------
def evolve(state: Template | None, event: DomainEvent) -> Template:
    if isinstance(event, ev.TemplateDefined):
        return Template.from_spec(event.template)
    # Templates and contacts share one namespace of streams: an id taken by a contact is no template.
    raise Conflict("this id is taken by another kind of record", field="template_id", code="id_taken")


def decide(state: Template | None, command: Any, now: Any, by: str) -> list[DomainEvent]:
    current = state or shipped(command.template_id)
    options = {k: v for k, v in command.options().items() if v is not None}
    template = build(command.template_id, (current.version if current else 0) + 1, [dict(d) for d in command.dimensions],
                     **options)
    return [ev.TemplateDefined(template_id=template.template_id, version=template.version,
                               template=template.to_spec(), at=now, by=by)]

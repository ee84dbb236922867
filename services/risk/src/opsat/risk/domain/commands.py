"""Commands of the risk service: the register, configuration (signal rules, plans, rotas) and emergencies.

People issue them through the API; the signal reaction issues `RecordSignal` and `ActivateEmergency`
from other services' events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from opsat.risk.domain.plans import Plan
    from opsat.risk.domain.signals import Signal


# --- the register -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IdentifyRisk:
    creates_stream: ClassVar[bool] = True
    generated_ids: ClassVar[tuple[str, ...]] = ("risk_id",)

    risk_id: str
    title: str
    category: str
    description: str
    subject_type: str
    subject: str
    owner: str | None = None
    likelihood: int | None = None
    impact: int | None = None


@dataclass(frozen=True)
class AssessRisk:
    risk_id: str
    likelihood: int
    impact: int
    rationale: str


@dataclass(frozen=True)
class PlanMitigation:
    risk_id: str
    plan: str
    due_on: date
    owner: str | None = None


@dataclass(frozen=True)
class RecordProgress:
    risk_id: str
    percent: int
    note: str


@dataclass(frozen=True)
class AcceptRisk:
    risk_id: str
    rationale: str


@dataclass(frozen=True)
class CloseRisk:
    risk_id: str
    reason: str


@dataclass(frozen=True)
class RecordSignal:
    """A signal rule fired: raise a new risk (`risk_id` is then new) or re-score the open one."""

    may_create: ClassVar[bool] = True

    risk_id: str
    signal: Signal


# --- configuration ---------------------------------------------------------------------------------------
def plain(value: Any) -> Any:
    """HTTP bodies may hand nested models in; the domain reads plain JSON values."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _spec(command: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: plain(getattr(command, name)) for name in names}


@dataclass(frozen=True)
class DefineRule:
    may_create: ClassVar[bool] = True  # a shipped default or a new one: the domain decides

    rule_id: str
    source: str
    subject: str
    threshold: float
    mode: str = "count"
    window_seconds: int | None = None
    last_n: int | None = None
    priorities: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    per_kind: bool = False
    category: str = "service_quality"
    likelihood: int = 3
    impact: int = 3
    enabled: bool = True

    def spec(self) -> dict[str, Any]:
        return _spec(self, ("source", "subject", "threshold", "mode", "window_seconds", "last_n", "priorities",
                            "kinds", "per_kind", "category", "likelihood", "impact", "enabled"))


@dataclass(frozen=True)
class DefinePlan:
    may_create: ClassVar[bool] = True

    plan_id: str
    title: str
    steps: tuple[dict[str, Any], ...]
    triggers: dict[str, Any] = field(default_factory=dict)
    resources: tuple[dict[str, Any], ...] = ()

    def spec(self) -> dict[str, Any]:
        return _spec(self, ("title", "steps", "triggers", "resources"))


@dataclass(frozen=True)
class DefineRota:
    may_create: ClassVar[bool] = True

    rota_id: str
    team: str
    role: str
    starts_on: str
    members: tuple[str, ...]
    time_zone: str = "Asia/Shanghai"
    handover_time: str = "09:00"

    def spec(self) -> dict[str, Any]:
        return _spec(self, ("team", "role", "starts_on", "members", "time_zone", "handover_time"))


@dataclass(frozen=True)
class AddOverride:
    generated_ids: ClassVar[tuple[str, ...]] = ("override_id",)

    rota_id: str
    override_id: str
    person: str
    start: datetime
    end: datetime
    reason: str = ""


# --- emergencies -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActivateEmergency:
    """`plan` as it is now, `on_call` role -> person at this instant (resolved by the application layer)."""

    may_create: ClassVar[bool] = True  # the domain refuses a second activation

    emergency_id: str
    plan: Plan
    on_call: dict[str, str | None]
    reason: str
    team: str | None = None
    service: str | None = None
    trigger: dict[str, Any] | None = None


@dataclass(frozen=True)
class CompleteStep:
    emergency_id: str
    step_id: str
    note: str = ""


@dataclass(frozen=True)
class StandDown:
    emergency_id: str
    summary: str


@dataclass(frozen=True)
class RecordReview:
    emergency_id: str
    findings: tuple[str, ...]
    actions: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class CompleteReviewAction:
    emergency_id: str
    action_id: str
    note: str = ""

"""The SLA monitor's committed event contract is current, and what it reads of intake's events is published."""

from __future__ import annotations

import json
from pathlib import Path

from opsat.common.reactions import check_against_schema, schemas_from_asyncapi
from opsat.sla_monitor.app.reactions import INTAKE_READS, NOT_ACTIVITY, REQUEST_EVENTS, RequestActivity
from opsat.sla_monitor.domain.events import SLA_EVENTS
from opsat.sla_monitor.projections.targets import WORK_READS
from opsat.sla_monitor.service import SERVICE
from opsat.sla_monitor.settings import SlaSettings

DOCS = Path(__file__).resolve().parents[3] / "docs" / "events"


def test_committed_asyncapi_document_is_current():
    committed = json.loads((DOCS / "sla.asyncapi.json").read_text())
    generated = json.loads(json.dumps(SERVICE.registry().asyncapi(SlaSettings().topic("sla"))))
    assert committed == generated, "run `make docs` and commit docs/events/"
    assert generated["channels"]["opsat_sla_events"]["address"] == "opsat.sla.events"
    names = sorted(m["name"] for m in generated["components"]["messages"].values())
    assert names == sorted(f"{cls.event_type}.v{cls.schema_version}" for cls in SLA_EVENTS)


def test_the_fields_read_of_intake_events_are_in_intakes_published_schemas():
    schemas = schemas_from_asyncapi(json.loads((DOCS / "intake.asyncapi.json").read_text()))
    assert {cls.event_type: check_against_schema(cls, schemas) for cls in INTAKE_READS} == \
        {cls.event_type: [] for cls in INTAKE_READS}


def test_the_contract_check_can_fail():
    schemas = schemas_from_asyncapi(json.loads((DOCS / "intake.asyncapi.json").read_text()))
    accepted = next(cls for cls in INTAKE_READS if cls.event_type.endswith(".accepted"))
    del schemas[f"{accepted.event_type}.v1"]["properties"]["team"]
    assert check_against_schema(accepted, schemas) == [f"{accepted.event_type}.v1 has no field 'team'"]


def test_the_fields_the_workload_board_reads_of_intake_events_are_published():
    schemas = schemas_from_asyncapi(json.loads((DOCS / "intake.asyncapi.json").read_text()))
    assert {cls.event_type: check_against_schema(cls, schemas) for cls in WORK_READS} == \
        {cls.event_type: [] for cls in WORK_READS}


def test_every_published_request_event_carries_what_the_stall_rule_reads():
    schemas = schemas_from_asyncapi(json.loads((DOCS / "intake.asyncapi.json").read_text()))
    request_types = {name.rsplit(".", 1)[0] for name in schemas if name.startswith(REQUEST_EVENTS)}
    assert len(request_types) > 20
    problems = {t: check_against_schema(type("Read", (RequestActivity,), {"event_type": t}), schemas)
                for t in request_types}
    assert problems == {t: [] for t in request_types}
    assert NOT_ACTIVITY <= request_types  # the exclusions name real events


def test_every_clock_event_is_registered_and_given_to_the_targets_projection() -> None:
    """The targets projection names what it reads (`handles`), so the runner skips the rest before any database work:
    a clock event missing from CLOCK_EVENTS would be neither decoded nor given to it."""
    from opsat.sla_monitor.domain import events as ev
    from opsat.sla_monitor.projections.targets import WORK_READS, TargetsProjection

    def leaves(cls: type) -> set[type]:
        subclasses = cls.__subclasses__()
        return {cls} if not subclasses else set().union(*(leaves(sub) for sub in subclasses))

    assert leaves(ev.ClockEvent) == set(ev.CLOCK_EVENTS)
    assert set(TargetsProjection.handles) == {*ev.CLOCK_EVENTS, *ev.OUTAGE_EVENTS, *WORK_READS}
    assert not {ev.CalendarDefined, ev.CalendarDaysAdded, ev.PolicyDefined} & set(TargetsProjection.handles)

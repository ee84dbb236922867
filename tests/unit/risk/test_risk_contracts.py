"""The risk service's committed event contract is current, and what it reads of intake's, the SLA monitor's and
feedback's events is in their published schemas."""

from __future__ import annotations

import json
from pathlib import Path

from opsat.common.reactions import check_against_schema, schemas_from_asyncapi
from opsat.risk.app.reactions import UPSTREAM_READS, SurveyAnswered
from opsat.risk.domain.events import RISK_SERVICE_EVENTS
from opsat.risk.service import SERVICE
from opsat.risk.settings import RiskSettings

DOCS = Path(__file__).resolve().parents[3] / "docs" / "events"


def test_committed_asyncapi_document_is_current():
    committed = json.loads((DOCS / "risk.asyncapi.json").read_text())
    generated = json.loads(json.dumps(SERVICE.registry().asyncapi(RiskSettings().topic("risk"))))
    assert committed == generated, "run `make docs` and commit docs/events/"
    assert generated["channels"]["opsat_risk_events"]["address"] == "opsat.risk.events"
    names = sorted(m["name"] for m in generated["components"]["messages"].values())
    assert names == sorted(f"{cls.event_type}.v{cls.schema_version}" for cls in RISK_SERVICE_EVENTS)


def test_the_fields_read_of_intake_sla_and_feedback_events_are_in_their_published_schemas():
    schemas = {name: schema for source in SERVICE.consumes
               for name, schema in schemas_from_asyncapi(json.loads((DOCS / f"{source}.asyncapi.json").read_text())
                                                         ).items()}
    assert {cls.event_type: check_against_schema(cls, schemas) for cls in UPSTREAM_READS} == \
        {cls.event_type: [] for cls in UPSTREAM_READS}
    assert {cls.event_type.split(".")[1] for cls in UPSTREAM_READS} == set(SERVICE.consumes)


def test_the_csat_rule_reads_feedbacks_answers_with_their_team_and_score():
    feedback = schemas_from_asyncapi(json.loads((DOCS / "feedback.asyncapi.json").read_text()))
    answered = feedback["opsat.feedback.survey.answered.v1"]
    assert {"score", "at"} <= set(answered["required"]) and "team" in answered["properties"]
    assert check_against_schema(SurveyAnswered, feedback) == []


def test_the_contract_check_can_fail():
    schemas = schemas_from_asyncapi(json.loads((DOCS / "sla.asyncapi.json").read_text()))
    started = next(cls for cls in UPSTREAM_READS if cls.event_type == "opsat.sla.clock.started")
    del schemas["opsat.sla.clock.started.v1"]["properties"]["team"]
    assert check_against_schema(started, schemas) == ["opsat.sla.clock.started.v1 has no field 'team'"]
    assert check_against_schema(SurveyAnswered, schemas) == ["opsat.feedback.survey.answered.v1 is not published"]
    feedback = schemas_from_asyncapi(json.loads((DOCS / "feedback.asyncapi.json").read_text()))
    del feedback["opsat.feedback.survey.answered.v1"]["properties"]["team"]
    assert check_against_schema(SurveyAnswered, feedback) == ["opsat.feedback.survey.answered.v1 has no field 'team'"]


def test_the_signal_driver_s_runner_reads_every_upstream_event_it_needs_as_it_decodes():
    registries = SERVICE.runner_config(RiskSettings(), "risk_signals").registries
    assert all(any(read.event_type in r for r in registries) for read in UPSTREAM_READS)
    assert not any("opsat.sla.clock.breached" in r for r in SERVICE.runner_config(RiskSettings(), "register").registries)

"""The feedback service's committed event contract is current, marks contact details personal, carries no token,
and what it reads of intake's events is published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opsat.common.reactions import check_against_schema, schemas_from_asyncapi
from opsat.feedback.app.reactions import INTAKE_READS
from opsat.feedback.domain.events import FEEDBACK_EVENTS
from opsat.feedback.projections.service_facts import INTAKE_FACTS, SLA_FACTS
from opsat.feedback.service import SERVICE
from opsat.feedback.settings import FeedbackSettings

DOCS = Path(__file__).resolve().parents[3] / "docs" / "events"


def test_committed_asyncapi_document_is_current():
    committed = json.loads((DOCS / "feedback.asyncapi.json").read_text())
    generated = json.loads(json.dumps(SERVICE.registry().asyncapi(FeedbackSettings().topic("feedback"))))
    assert committed == generated, "run `make docs` and commit docs/events/"
    names = sorted(m["name"] for m in generated["components"]["messages"].values())
    assert names == sorted(f"{cls.event_type}.v{cls.schema_version}" for cls in FEEDBACK_EVENTS)


def test_contact_details_are_marked_personal_and_no_event_has_a_token_field():
    schemas = schemas_from_asyncapi(json.loads((DOCS / "feedback.asyncapi.json").read_text()))
    personal = sorted(f"{t}:{name}" for t, schema in schemas.items()
                      for name, prop in schema["properties"].items() if prop.get("x-personal"))
    assert personal == ["opsat.feedback.contact.registered.v1:email", "opsat.feedback.contact.registered.v1:name",
                        "opsat.feedback.survey.issued.v1:recipient"]
    assert not [t for t, schema in schemas.items() if "token" in schema["properties"]]


def test_the_fields_read_of_intake_events_are_in_intakes_published_schemas():
    schemas = schemas_from_asyncapi(json.loads((DOCS / "intake.asyncapi.json").read_text()))
    assert {cls.event_type: check_against_schema(cls, schemas) for cls in INTAKE_READS} == \
        {cls.event_type: [] for cls in INTAKE_READS}


def test_the_service_facts_read_of_intake_and_sla_events_are_published():
    for publisher, reads in (("intake", INTAKE_FACTS), ("sla", SLA_FACTS)):
        schemas = schemas_from_asyncapi(json.loads((DOCS / f"{publisher}.asyncapi.json").read_text()))
        assert {cls.event_type: check_against_schema(cls, schemas) for cls in reads} == \
            {cls.event_type: [] for cls in reads}


def test_the_token_key_is_required_in_prod_and_long_enough():
    with pytest.raises(ValueError, match="OPSAT_TOKEN_KEY is required"):
        FeedbackSettings(environment="prod").token_key_bytes()
    with pytest.raises(ValueError, match="at least 32 bytes"):
        FeedbackSettings(token_key="short")
    dev = FeedbackSettings(environment="dev", auth_dev_key="d" * 40)
    assert dev.token_key_bytes() == FeedbackSettings(environment="dev", auth_dev_key="d" * 40).token_key_bytes()

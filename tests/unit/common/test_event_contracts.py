"""The committed event contracts (docs/events/*.asyncapi.json) match what the code publishes."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import jsonschema

from opsat.common.envelope import cloudevent_schema, to_cloudevent
from opsat.intake.domain.events import INTAKE_EVENTS
from opsat.intake.service import SERVICE
from opsat.intake.settings import IntakeSettings

registry = SERVICE.registry

DOCS = Path(__file__).resolve().parents[3] / "docs" / "events"


def test_committed_asyncapi_document_is_current():
    committed = json.loads((DOCS / "intake.asyncapi.json").read_text())
    generated = json.loads(json.dumps(registry().asyncapi(IntakeSettings().topic("intake"))))
    assert committed == generated, "run `make docs` and commit docs/events/"


def test_asyncapi_lists_every_event_type_once():
    doc = registry().asyncapi("opsat.intake.events")
    names = [m["name"] for m in doc["components"]["messages"].values()]
    assert sorted(names) == sorted(f"{cls.event_type}.v{cls.schema_version}" for cls in INTAKE_EVENTS)
    assert doc["asyncapi"] == "3.0.0" and doc["channels"]["opsat_intake_events"]["address"] == "opsat.intake.events"


def test_a_published_cloudevent_validates_against_its_schema():
    from datetime import datetime

    from opsat.intake.domain.events import RequestSubmitted

    event = RequestSubmitted(request_id="r1", at=datetime(2026, 1, 5, 9, tzinfo=UTC), by="u1", kind="incident",
                             channel="portal", title="t", description="d", impact=1, urgency=1, priority="P1",
                             requester_id="u1", organisation_id="acme")
    ce_type = "opsat.intake.request.submitted.v1"
    envelope = to_cloudevent(source="/opsat/intake", event_id="6f1c1f7e-0b7a-4d39-9d59-8b8f0d6f4a11", ce_type=ce_type,
                             stream_id="r1", stream_type="request", version=1, time=event.at,
                             data=event.model_dump(mode="json"), metadata={"tenant": "acme", "actor": "u1",
                                                                            "correlation_id": "c"})
    schema = cloudevent_schema(ce_type, registry().json_schemas()[ce_type])
    jsonschema.validate(envelope, schema)
    broken = {**envelope, "data": {**envelope["data"], "impact": "high"}}
    try:
        jsonschema.validate(broken, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("a wrong type in data must fail the schema")

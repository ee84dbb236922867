"""The appraisal service's committed event contract is current, and what it reads of intake's and the SLA
monitor's events is in their published schemas."""

from __future__ import annotations

import json
from pathlib import Path

from opsat.appraisal.domain.events import APPRAISAL_EVENTS
from opsat.appraisal.projections.facts import READS
from opsat.appraisal.service import SERVICE
from opsat.appraisal.settings import AppraisalSettings
from opsat.common.reactions import check_against_schema, schemas_from_asyncapi

DOCS = Path(__file__).resolve().parents[3] / "docs" / "events"


def test_committed_asyncapi_document_is_current():
    committed = json.loads((DOCS / "appraisal.asyncapi.json").read_text())
    generated = json.loads(json.dumps(SERVICE.registry().asyncapi(AppraisalSettings().topic("appraisal"))))
    assert committed == generated, "run `make docs` and commit docs/events/"
    names = sorted(m["name"] for m in generated["components"]["messages"].values())
    assert names == sorted(f"{cls.event_type}.v{cls.schema_version}" for cls in APPRAISAL_EVENTS)


def test_the_fields_read_of_other_services_events_are_published():
    schemas = {}
    for publisher in ("intake", "sla", "feedback", "risk"):
        schemas.update(schemas_from_asyncapi(json.loads((DOCS / f"{publisher}.asyncapi.json").read_text())))
    assert {cls.event_type: check_against_schema(cls, schemas) for cls in READS} == \
        {cls.event_type: [] for cls in READS}

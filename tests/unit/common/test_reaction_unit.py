"""A reaction unit-tested on the in-memory store: the command it issues, caused by the event."""

from __future__ import annotations

from datetime import UTC, datetime

from probe_service import SurveyOnClose, probe

from opsat.common.consumer import ReceivedEvent
from opsat.common.memstore import InMemoryEventStore


def closed_event(event_id: str, request_id: str) -> ReceivedEvent:
    return ReceivedEvent(id=event_id, type="opsat.intake.request.closed.v1", event_type="opsat.intake.request.closed",
                         schema_version=1, source="/opsat/intake", subject=request_id, sequence=5,
                         time=datetime.now(UTC), data={"request_id": request_id, "reason": "accepted"},
                         tenant="acme", actor="u-req", correlation_id="corr-1")


async def test_a_closed_request_issues_one_survey_caused_by_the_event():
    service = probe()
    store = InMemoryEventStore(service.registry())
    reaction = SurveyOnClose("ns.intake.events")
    reaction.handler = service.command_handler(service.settings(environment="test"), store)
    event = closed_event("11111111-1111-1111-1111-111111111111", "REQ-1")
    # The memory store has no transaction: the command is written at once. (A redelivery is the consumer's to
    # skip: the processed mark and the command's events commit together; see the integration test.)
    await reaction.apply(None, event)  # type: ignore[arg-type]
    surveys = [stream for stream in store._streams]  # noqa: SLF001 - the memory store has no listing of streams
    assert len(surveys) == 1
    recorded = await store.load(surveys[0])
    assert [r.event.request_id for r in recorded] == ["REQ-1"]
    assert recorded[0].metadata == {"actor": "system", "tenant": "acme", "correlation_id": "corr-1",
                                    "causation_id": event.id}

"""The service kit: a description that contradicts itself fails when built; routes come from commands;
the tolerant reader; and intake's wiring stays small."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from probe_service import IssueSurvey, RequestClosed, SurveyOnClose, probe
from pydantic import BaseModel

from opsat.common.commands import CommandRouter
from opsat.common.consumer import ReceivedEvent
from opsat.common.domain import Role
from opsat.common.reactions import ForeignEvent, check_against_schema, schemas_from_asyncapi
from opsat.common.service import DescriptionError

ROOT = Path(__file__).resolve().parents[3]


def test_the_probe_description_holds_together() -> None:
    service = probe()
    assert [c.name for c in service.consumer_classes()] == ["survey_on_close"]
    assert service.module == "opsat.probe.service"


def test_a_consumer_of_a_topic_the_service_does_not_declare_is_refused() -> None:
    with pytest.raises(DescriptionError, match=r"consumer 'survey_on_close' reads the topic of 'intake'.*consumes"):
        probe(consumes=[])


def test_two_consumers_with_one_name_are_refused() -> None:
    class Twin(SurveyOnClose):
        pass

    with pytest.raises(DescriptionError, match="two consumers are named 'survey_on_close'"):
        probe(reactions=[SurveyOnClose, Twin])


def test_a_routed_command_without_a_rule_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class CancelSurvey:
        survey_id: str

    router = CommandRouter(item_path="/surveys/{survey_id}", id_param=str, accepted=BaseModel,
                           callers=lambda _cls: (Role.service,))
    router.command("cancel", CancelSurvey, None, "Cancel a survey")
    with pytest.raises(DescriptionError, match="route for CancelSurvey issues CancelSurvey, which has no rule"):
        probe(routers=[router])


def test_a_deadline_issuing_an_unknown_command_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class ExpireSurvey:
        survey_id: str

    with pytest.raises(DescriptionError, match="deadline 'expiry' issues ExpireSurvey"):
        probe(deadlines={"expiry": ExpireSurvey})


def test_a_body_that_does_not_fit_its_command_is_refused_when_the_route_is_declared() -> None:
    class Misnamed(BaseModel):
        request: str  # the command calls it request_id

    router = CommandRouter(item_path="/surveys/{survey_id}", id_param=str, accepted=BaseModel,
                           callers=lambda _cls: (Role.service,))
    with pytest.raises(TypeError, match=r"body Misnamed has fields \['request'\] that IssueSurvey lacks"):
        router.command("issue", IssueSurvey, Misnamed, "Issue")

    class Partial(BaseModel):
        request_id: str

    with pytest.raises(TypeError, match=r"IssueSurvey needs \['organisation_id'\]"):
        router.command("issue", IssueSurvey, Partial, "Issue")


def _received(event_type: str, data: dict, version: int = 1) -> ReceivedEvent:
    from datetime import UTC, datetime

    return ReceivedEvent(id="e-1", type=f"{event_type}.v{version}", event_type=event_type, schema_version=version,
                         source="/opsat/intake", subject="r-1", sequence=5, time=datetime.now(UTC), data=data,
                         tenant="acme", actor="u", correlation_id="c")


def test_the_tolerant_reader_ignores_fields_it_does_not_need() -> None:
    received = _received("opsat.intake.request.closed", {"request_id": "r-1", "reason": "accepted",
                                                          "brand_new_field": {"x": 1}, "at": "2026-01-01T00:00:00Z"})
    assert RequestClosed.matches(received)
    assert RequestClosed.read(received) == RequestClosed(request_id="r-1", reason="accepted")


def test_a_newer_version_is_read_only_through_an_explicit_mapping() -> None:
    v2 = _received("opsat.intake.request.closed", {"id": "r-1", "closure": {"reason": "accepted"}}, version=2)
    assert not RequestClosed.matches(v2)

    class RequestClosedV2Aware(RequestClosed):
        upgrades = {2: lambda d: {"request_id": d["id"], "reason": d["closure"]["reason"]}}

    assert RequestClosedV2Aware.matches(v2)
    assert RequestClosedV2Aware.read(v2).request_id == "r-1"


def test_foreign_events_match_the_publishers_committed_schema() -> None:
    published = schemas_from_asyncapi(json.loads((ROOT / "docs/events/intake.asyncapi.json").read_text()))
    assert check_against_schema(RequestClosed, published) == []

    class Wishful(ForeignEvent):
        event_type = "opsat.intake.request.closed"
        request_id: str
        satisfaction: int  # intake never publishes this

    assert check_against_schema(Wishful, published) == ["opsat.intake.request.closed.v1 has no field 'satisfaction'"]


def test_intake_wiring_is_small() -> None:
    """The modules at the top of opsat/intake other than settings (plus api/deps.py if it came back)."""
    package = ROOT / "services/intake/src/opsat/intake"
    wiring = [p for p in package.glob("*.py") if p.name != "settings.py"] + list(package.glob("api/deps.py"))
    lines = sum(1 for p in wiring for line in p.read_text().splitlines() if line.strip())
    assert lines <= 80, {p.name: len(p.read_text().splitlines()) for p in wiring}


def test_a_projection_without_stream_versions_is_refused() -> None:
    """Every read model is monotone: the runner needs the table in which it records applied versions."""
    from sqlalchemy import MetaData

    from opsat.common.consumer import processed_events_table

    class Unguarded:
        name = "surveys"
        sources = ("probe",)
        metadata = MetaData(schema="read_model")
        processed_events_table(metadata)

    with pytest.raises(DescriptionError, match="projection 'surveys' has no stream_versions table"):
        probe(projections=[Unguarded])


def test_a_further_worker_loop_is_built_from_the_settings_engine_and_handler() -> None:
    """A service's own loop (e.g. a mail sender) runs beside the relay and the consumers, with the same handler."""
    from opsat.common.testing.service import settings_for_tests

    built = []

    class Sender:
        def __init__(self, settings, engine, handler) -> None:  # type: ignore[no-untyped-def]
            built.append((settings, handler))

        async def run(self, stop) -> None:  # type: ignore[no-untyped-def]
            await stop.wait()

    service = probe(loops={"sender": Sender})
    settings = settings_for_tests(service, "postgresql+asyncpg://x@127.0.0.1:1/x", "127.0.0.1:1", "t")
    names = [name for name, _ in service.build_loops(settings)]
    assert "sender" in names and built[0][0] is settings and built[0][1].service == "probe"

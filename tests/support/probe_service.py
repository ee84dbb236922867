"""A throwaway second service declared only through the kit: it issues a survey when intake closes a request.

It imports nothing of intake: it reads `opsat.intake.request.closed` through a tolerant reader.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from fastapi import APIRouter

from opsat.common.commands import CommandRouter
from opsat.common.consumer import ReceivedEvent
from opsat.common.domain import Actor, AlreadyExists, CommandContext, DomainEvent, Role
from opsat.common.reactions import CommandReaction, ForeignEvent
from opsat.common.service import Service
from opsat.common.settings import ServiceSettings


class ProbeSettings(ServiceSettings):
    service_name: str = "probe"


class SurveyIssued(DomainEvent):
    event_type = "opsat.probe.survey.issued"
    survey_id: str
    request_id: str
    at: datetime


@dataclass(frozen=True)
class IssueSurvey:
    creates_stream: ClassVar[bool] = True

    survey_id: str
    request_id: str
    organisation_id: str


class SurveyAggregate:
    stream_type = "survey"
    id_field = "survey_id"
    commands = frozenset({IssueSurvey})

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings

    @staticmethod
    def evolve(state: Any, event: DomainEvent) -> Any:
        return event

    def tenant(self, state: Any, command: Any, actor: Actor) -> str:
        return command.organisation_id

    def decide(self, state: Any, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        if state is not None:
            raise AlreadyExists(f"survey {command.survey_id} exists")
        return [SurveyIssued(survey_id=command.survey_id, request_id=command.request_id, at=ctx.now)]


class RequestClosed(ForeignEvent):
    """What the probe needs of intake's event; the rest of it is ignored."""

    event_type = "opsat.intake.request.closed"
    request_id: str
    reason: str


class SurveyOnClose(CommandReaction):
    name = "survey_on_close"
    sources = ("intake",)
    command = IssueSurvey

    def command_for(self, received: ReceivedEvent) -> IssueSurvey | None:
        if not RequestClosed.matches(received):
            return None
        closed = RequestClosed.read(received)
        # A fresh id each time: only the kit's dedupe and idempotency key stand between a replay and a duplicate.
        return IssueSurvey(survey_id=str(uuid.uuid4()), request_id=closed.request_id,
                           organisation_id=received.tenant or "unknown")


def probe(**changes: Any) -> Service:
    """The probe's description; `changes` replace parts of it (to test inconsistent descriptions)."""
    parts: dict[str, Any] = dict(
        name="probe", description="Issues a survey per closed request.", settings=ProbeSettings,
        events=[SurveyIssued], aggregate=SurveyAggregate, routers=[APIRouter()], reactions=[SurveyOnClose],
        consumes=["intake"], migrations=Path(__file__).parent / "probe_migrations", partitions=2)
    return Service(**{**parts, **changes})


def surveys_router() -> CommandRouter:
    """A router with one command route, for the description checks."""
    from pydantic import BaseModel

    class Body(BaseModel):
        request_id: str
        organisation_id: str

    router = CommandRouter(item_path="/surveys/{survey_id}", id_param=str, accepted=Body,
                           callers=lambda _cls: (Role.service,))
    router.command("issue", IssueSurvey, Body, "Issue a survey")
    return router

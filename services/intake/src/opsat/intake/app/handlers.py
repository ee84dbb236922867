"""Intake's aggregate as the generic command handler sees it: requests, decided under their organisation's policy."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from opsat.common.domain import Actor, CommandContext, DomainEvent
from opsat.common.eventstore import EventStore, StreamStore
from opsat.common.settings import merge_nested
from opsat.intake.app.calendars import latest_calendar
from opsat.intake.domain import aggregate
from opsat.intake.domain.commands import ResolveRequest
from opsat.intake.domain.policy import IntakePolicy
from opsat.intake.settings import IntakeSettings


class PolicyBook:
    """The intake policy per organisation: the default, merged with an organisation's overrides.

    Nested settings merge key by key, so {"calendar": {"work_start": "08:00"}} keeps the default calendar's
    time zone, hours and holidays; a list (holidays, kinds) given in an override replaces the default's."""

    def __init__(self, default: dict[str, Any] | None = None, by_org: dict[str, dict[str, Any]] | None = None):
        self.default = IntakePolicy.from_mapping(default or {})
        self._by_org = {org: IntakePolicy.from_mapping(merge_nested(default or {}, over))
                        for org, over in (by_org or {}).items()}

    def for_org(self, organisation_id: str | None) -> IntakePolicy:
        return self._by_org.get(organisation_id or "", self.default)


class RequestAggregate:
    stream_type = "request"
    id_field = "request_id"
    commands = aggregate.COMMANDS
    evolve = staticmethod(aggregate.evolve)

    def __init__(self, settings: IntakeSettings) -> None:
        self.policies = PolicyBook(settings.intake_policy, settings.intake_policy_by_org)

    def tenant(self, state: aggregate.ServiceRequest | None, command: Any, actor: Actor) -> str:
        if state is not None:
            return state.organisation_id
        return getattr(command, "organisation_id", None) or actor.organisation  # a submit names its organisation

    async def prepare(self, command: Any, state: aggregate.ServiceRequest | None, store: StreamStore) -> Any:
        """A resolve counts auto-close on the latest followed version of the policy's calendar."""
        if not isinstance(command, ResolveRequest) or not isinstance(store, EventStore) or state is None:
            return command
        follows = self.policies.for_org(state.organisation_id).follows_calendar
        latest = await latest_calendar(store.engine, follows) if follows else None
        return replace(command, calendar=latest) if latest is not None else command

    def decide(self, state: aggregate.ServiceRequest | None, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        return aggregate.decide(state, command, ctx, self.policies.for_org(self.tenant(state, command, ctx.actor)))

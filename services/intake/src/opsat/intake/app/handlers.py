"""Command handling for intake: load -> decide -> append, with the policy of the request's organisation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from opsat.common.domain import Actor, CommandContext, NotFound
from opsat.common.envelope import EventMetadata
from opsat.common.eventstore import AppendResult, EventStore, Idempotency, run_command
from opsat.common.observability import EVENTS_APPENDED
from opsat.common.settings import merge_nested
from opsat.intake.domain import aggregate
from opsat.intake.domain.commands import LinkRequest, SubmitRequest
from opsat.intake.domain.policy import IntakePolicy

STREAM_TYPE = "request"


def utcnow() -> datetime:
    return datetime.now(UTC)


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


class IntakeHandlers:
    def __init__(self, store: EventStore, policies: PolicyBook, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.policies = policies
        self.clock = clock

    async def execute(
        self,
        command: Any,
        actor: Actor,
        *,
        correlation_id: str,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        traceparent: str | None = None,
        request_fingerprint: Any = None,
    ) -> AppendResult:
        ctx = CommandContext(actor=actor, now=self.clock())
        submit = isinstance(command, SubmitRequest)
        if isinstance(command, LinkRequest) and await self.store.stream_version(command.target_id) == 0:
            raise NotFound(f"request {command.target_id} not found", field="target_id")

        def organisation(state: aggregate.ServiceRequest | None) -> str | None:
            return command.organisation_id if submit else state.organisation_id if state else None

        def decide(state: aggregate.ServiceRequest | None) -> list:
            return aggregate.decide(state, command, ctx, self.policies.for_org(organisation(state)))

        def metadata(state: aggregate.ServiceRequest | None) -> EventMetadata:
            return EventMetadata(actor=actor.id, tenant=organisation(state) or actor.organisation,
                                 correlation_id=correlation_id, traceparent=traceparent)

        idempotency = None
        if idempotency_key:
            idempotency = Idempotency.for_request(idempotency_key, actor.id, type(command).__name__,
                                                  request_fingerprint)
        result = await run_command(
            self.store,
            stream_id=command.request_id,
            stream_type=STREAM_TYPE,
            decide=decide,
            evolve=aggregate.evolve,
            metadata=metadata,
            idempotency=idempotency,
            expected_version=expected_version,
            new_stream=submit,
        )
        if not result.replayed:
            EVENTS_APPENDED.labels("intake").inc(len(result.event_ids))
        return result

"""Shared helpers of the intake domain unit tests: actors, a fixed clock and a command runner."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from opsat.common.domain import Actor, CommandContext, DomainEvent, Role
from opsat.intake.domain import ServiceRequest, decide, replay
from opsat.intake.domain import commands as c
from opsat.intake.domain.policy import IntakePolicy
from opsat.intake.domain.values import Channel, RequestKind

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2025, 9, 1, 10, 0, tzinfo=TZ)  # a Monday
RID = "REQ-1"
POLICY = IntakePolicy()

REQUESTER = Actor("u-alice", "org-acme", frozenset({Role.requester}))
COLLEAGUE = Actor("u-amy", "org-acme", frozenset({Role.requester}))
STRANGER = Actor("u-zed", "org-other", frozenset({Role.requester}))
AGENT = Actor("u-bob", "provider", frozenset({Role.agent}))
LEAD = Actor("u-lee", "provider", frozenset({Role.team_lead}))
MANAGER = Actor("u-carol", "provider", frozenset({Role.manager}))
ADMIN = Actor("u-root", "provider", frozenset({Role.admin}))
AUDITOR = Actor("u-audrey", "provider", frozenset({Role.auditor}))
RISK_OFFICER = Actor("u-rita", "provider", frozenset({Role.risk_officer}))


def submit_command(defaults: dict, changes: dict) -> c.SubmitRequest:
    """A SubmitRequest from the requester above: the file's `defaults` (title, impact, ...), then `changes`."""
    fields = dict(request_id=RID, kind=RequestKind.incident, channel=Channel.portal, requester_id=REQUESTER.id,
                  organisation_id=REQUESTER.organisation)
    return c.SubmitRequest(**{**fields, **defaults, **changes})


class Story:
    """Runs commands one after another as a handler does: decide, then evolve the new events."""

    def __init__(self, policy: IntakePolicy = POLICY) -> None:
        self.policy = policy
        self.state: ServiceRequest | None = None
        self.events: list[DomainEvent] = []
        self.now = T0

    def do(self, command, actor: Actor, at: datetime | None = None) -> list[DomainEvent]:
        self.now = at or self.now + timedelta(minutes=5)
        new = decide(self.state, command, CommandContext(actor, self.now), self.policy)
        self.state = replay(new, self.state)
        self.events.extend(new)
        return new

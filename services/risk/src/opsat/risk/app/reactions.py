"""Risk signals: other services' events (read through a tolerant reader) -> observations -> rules -> commands.

`SignalDriver` keeps, in the `reactions` schema (outside the disposable read models), what it needs to judge:
the team, service and priority of each request as the SLA monitor last announced them, every observation
(breach, incident, response) by upstream event id, and the open risk of each rule's subject. For every
observation it evaluates the rules as of the subject's newest observation and issues `RecordSignal` for each
rule that fires (a new risk, or a re-score of the subject's open one) and, for a P1 breach or P1 incident,
`ActivateEmergency` for the matching plan (once per plan and request). Each command's Idempotency-Key is
derived from the upstream event id and the rule, and evidence already recorded on a risk adds nothing, so a
replayed topic issues nothing new.

The feedback service's responses are read by `ResponseRecorded` and the `csat-team` rule; the driver reads
`opsat.feedback.events` once that topic exists (add "feedback" to `sources` and the service's `consumes`).
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta
from typing import Any, ClassVar

from pydantic import AwareDatetime
from sqlalchemy import Column, DateTime, Float, Integer, MetaData, String, Table, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.common.commands import CommandMeta
from opsat.common.consumer import ReceivedEvent, processed_events_table
from opsat.common.db import REACTIONS_SCHEMA
from opsat.common.domain import DomainError
from opsat.common.eventstore import fold
from opsat.common.reactions import CommandReaction, ForeignEvent
from opsat.risk.app import configuration
from opsat.risk.domain import commands as c
from opsat.risk.domain import plans, register
from opsat.risk.domain.signals import Observation, Signal, SignalRule

log = logging.getLogger(__name__)
RISKS = uuid.UUID("0b3f7e0e-8a43-4f4e-a3c5-1f7b6a0d9c11")  # namespace of risk ids raised by signals
RULES_MAX_AGE_S = 1.0  # a changed rule or plan applies to observations at most this much later


# --- the fields the risk service reads of intake's, the SLA monitor's and feedback's events ---------------
class _Upstream(ForeignEvent):
    request_id: str
    at: AwareDatetime


class Submitted(_Upstream):
    event_type: ClassVar[str] = "opsat.intake.request.submitted"
    kind: str
    priority: str
    service: str | None = None
    team: str | None = None


class ClockStarted(_Upstream):
    event_type: ClassVar[str] = "opsat.sla.clock.started"
    kind: str
    priority: str
    service: str | None = None
    team: str | None = None


class ResponseMet(_Upstream):
    event_type: ClassVar[str] = "opsat.sla.clock.response_met"
    team: str | None = None


class TeamChanged(_Upstream):
    event_type: ClassVar[str] = "opsat.sla.clock.team_changed"
    team: str


class Retargeted(_Upstream):
    event_type: ClassVar[str] = "opsat.sla.clock.retargeted"
    priority: str


class Breached(_Upstream):
    event_type: ClassVar[str] = "opsat.sla.clock.breached"
    target: str


class ResponseRecorded(ForeignEvent):
    """A satisfaction response (feedback service): its 0-100 score and the team and service it rates."""

    event_type: ClassVar[str] = "opsat.feedback.response.recorded"
    response_id: str
    score: float
    at: AwareDatetime
    team: str | None = None
    service: str | None = None
    request_id: str | None = None


UPSTREAM_READS: tuple[type[ForeignEvent], ...] = (Submitted, ClockStarted, ResponseMet, TeamChanged, Retargeted,
                                                  Breached, ResponseRecorded)


# --- what the driver remembers -------------------------------------------------------------------------
def signal_metadata() -> MetaData:
    metadata = MetaData(schema=REACTIONS_SCHEMA)
    processed_events_table(metadata, schema=REACTIONS_SCHEMA)
    Table("signal_requests", metadata,
          Column("request_id", String, primary_key=True), Column("kind", String), Column("priority", String),
          Column("team", String), Column("service", String), Column("sequence", Integer, nullable=False))
    Table("signal_observations", metadata,
          Column("event_id", String, primary_key=True), Column("source", String, nullable=False),
          Column("at", DateTime(timezone=True), nullable=False), Column("team", String, index=True),
          Column("service", String, index=True), Column("kind", String), Column("priority", String),
          Column("value", Float), Column("request_id", String))
    Table("signal_subjects", metadata,
          Column("subject_key", String, primary_key=True), Column("risk_id", String, nullable=False))
    return metadata


SIGNAL_METADATA = signal_metadata()
_T = SIGNAL_METADATA.tables
REQUESTS = _T[f"{REACTIONS_SCHEMA}.signal_requests"]
OBSERVATIONS = _T[f"{REACTIONS_SCHEMA}.signal_observations"]
SUBJECTS = _T[f"{REACTIONS_SCHEMA}.signal_subjects"]


class SignalDriver(CommandReaction):
    name: ClassVar[str] = "risk_signals"
    sources: ClassVar[tuple[str, ...]] = ("intake", "sla")
    command: ClassVar[type] = c.RecordSignal

    def __init__(self, *topics: str) -> None:
        super().__init__(*topics)
        self.metadata = SIGNAL_METADATA
        self._book: tuple[float, dict[str, SignalRule], dict[str, plans.Plan]] | None = None

    def command_for(self, received: ReceivedEvent) -> Any | None:
        return None  # one event may call for several commands: `apply` issues them

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        observation = await self.observe(conn, received)
        if observation is None:
            return
        await conn.execute(insert(OBSERVATIONS).values(
            event_id=observation.event_id, source=observation.source, at=observation.at, team=observation.team,
            service=observation.service, kind=observation.kind, priority=observation.priority,
            value=observation.value, request_id=_request_of(received)).on_conflict_do_nothing())
        rules, plan_book = await self.configuration(conn)
        for rule in sorted(rules.values(), key=lambda r: r.rule_id):
            if rule.subject_of(observation) is None:
                continue
            # As of the subject's newest observation: events of one subject arrive from several partitions,
            # so the last to arrive is not always the latest.
            subject = rule.subject_of(observation)
            counted = [o for o in await self.history(conn, rule, observation) if rule.subject_of(o) == subject]
            signal = rule.evaluate(max(counted, key=lambda o: (o.at, o.event_id)), counted)
            if signal is not None:
                await self.signal(conn, received, signal)
        if observation.priority == "P1" and (observation.source == "sla_breach" or observation.kind == "incident"):
            await self.activate(conn, received, observation, plan_book)

    # --- upstream events -> observations ------------------------------------------------------------------
    async def observe(self, conn: AsyncConnection, received: ReceivedEvent) -> Observation | None:
        read = next((cls.read(received) for cls in UPSTREAM_READS if cls.matches(received)), None)
        match read:
            case ClockStarted():
                await self.remember(conn, received, read.request_id, kind=read.kind, priority=read.priority,
                                    team=read.team, service=read.service)
            case ResponseMet() if read.team:
                await self.remember(conn, received, read.request_id, team=read.team)
            case TeamChanged():
                await self.remember(conn, received, read.request_id, team=read.team)
            case Retargeted():
                await self.remember(conn, received, read.request_id, priority=read.priority)
            case Breached():
                facts = (await conn.execute(select(REQUESTS).where(REQUESTS.c.request_id == read.request_id))
                         ).mappings().first() or {}
                return Observation(event_id=received.id, source="sla_breach", at=read.at, team=facts.get("team"),
                                   service=facts.get("service"), kind=facts.get("kind"),
                                   priority=facts.get("priority"))
            case Submitted():
                return Observation(event_id=received.id, source="incident", at=read.at, team=read.team,
                                   service=read.service, kind=read.kind, priority=read.priority)
            case ResponseRecorded():
                return Observation(event_id=received.id, source="feedback_response", at=read.at, team=read.team,
                                   service=read.service, value=read.score)
        return None

    async def remember(self, conn: AsyncConnection, received: ReceivedEvent, request_id: str, **facts: Any) -> None:
        """A request's latest team, service and priority (events of one clock arrive in order)."""
        row = {"request_id": request_id, "sequence": received.sequence, **facts}
        statement = insert(REQUESTS).values(**row)
        await conn.execute(statement.on_conflict_do_update(
            index_elements=[REQUESTS.c.request_id], set_={**facts, "sequence": received.sequence},
            where=REQUESTS.c.sequence < received.sequence))

    async def history(self, conn: AsyncConnection, rule: SignalRule, latest: Observation) -> list[Observation]:
        """The observations of the rule's source and subject that a window or last N including `latest` can see
        (`latest` itself among them: it was stored before)."""
        o = OBSERVATIONS.c
        column = o.team if rule.subject == "team" else o.service
        query = select(OBSERVATIONS).where(o.source == rule.source, column == getattr(latest, rule.subject))
        if rule.per_kind:
            query = query.where(o.kind == latest.kind)
        if rule.window_seconds is not None:
            query = query.where(o.at > latest.at - timedelta(seconds=rule.window_seconds))
        if rule.mode != "count":
            query = query.order_by(o.at.desc(), o.event_id.desc()).limit(4 * (rule.last_n or 1))  # after filters
        rows = (await conn.execute(query)).mappings().all()
        return [Observation(event_id=r["event_id"], source=r["source"], at=r["at"], team=r["team"],
                            service=r["service"], kind=r["kind"], priority=r["priority"], value=r["value"])
                for r in rows]

    async def configuration(self, conn: AsyncConnection) -> tuple[dict[str, SignalRule], dict[str, plans.Plan]]:
        now = time.monotonic()
        if self._book is None or now - self._book[0] > RULES_MAX_AGE_S:
            assert self.handler is not None, "the service kit sets the handler"
            store = self.handler.store
            self._book = (now, await configuration.rule_book(conn, store), await configuration.plan_book(conn, store))
        return self._book[1], self._book[2]

    # --- commands ---------------------------------------------------------------------------------------
    async def _execute(self, command: Any, received: ReceivedEvent, purpose: str) -> None:
        assert self.handler is not None, "the service kit sets the handler"
        meta = CommandMeta(correlation_id=received.correlation_id or received.id, causation_id=received.id,
                           idempotency_key=f"{self.name}:{received.id}:{purpose}", fingerprint=received.id)
        try:
            await self.handler.execute(command, self.actor, meta)
        except DomainError as exc:  # the domain says no (already recorded, already active): a decision
            log.info("reaction %s: %s refused for event %s: %s", self.name, type(command).__name__, received.id,
                     exc.detail)

    async def signal(self, conn: AsyncConnection, received: ReceivedEvent, signal: Signal) -> None:
        """Re-score the subject's open risk, or raise a new one (its id derived from the event that raised it)."""
        await self._execute(c.RecordSignal(risk_id=await self.open_risk(conn, signal, received), signal=signal),
                            received, f"rule:{signal.rule_id}")

    async def open_risk(self, conn: AsyncConnection, signal: Signal, received: ReceivedEvent) -> str:
        """The subject's open risk, or a new id claimed for it. The claim is a conditional write on the subject's
        row: a replica claiming the same subject concurrently waits for this transaction and then takes ours."""
        assert self.handler is not None
        key = SUBJECTS.c.subject_key == signal.key
        known = (await conn.execute(select(SUBJECTS.c.risk_id).where(key))).scalar()
        if known is not None:
            risk = fold(register.evolve, await self.handler.store.load(known))
            if risk is None or risk.open:
                return known
        minted = str(uuid.uuid5(RISKS, f"{signal.key}:{received.id}"))
        if known is None:
            claim = insert(SUBJECTS).values(subject_key=signal.key, risk_id=minted).on_conflict_do_nothing()
        else:  # the last one was accepted or closed: a new risk replaces it
            claim = update(SUBJECTS).where(key, SUBJECTS.c.risk_id == known).values(risk_id=minted)
        if (await conn.execute(claim.returning(SUBJECTS.c.risk_id))).scalar() is not None:
            return minted
        return (await conn.execute(select(SUBJECTS.c.risk_id).where(key))).scalar_one()  # another replica's

    async def activate(self, conn: AsyncConnection, received: ReceivedEvent, observation: Observation,
                       book: dict[str, plans.Plan]) -> None:
        source = "breach" if observation.source == "sla_breach" else "incident"
        plan = plans.choose(book.values(), source, observation.priority, observation.team, observation.service)
        request_id = _request_of(received)
        if plan is None or request_id is None:
            return
        assert self.handler is not None
        what = "SLA breach" if source == "breach" else "incident"
        command = await configuration.activation(
            conn, self.handler.store, emergency_id=configuration.emergency_id_for(plan.plan_id, request_id),
            plan_id=plan.plan_id, reason=f"P1 {what} of request {request_id}", team=observation.team,
            service=observation.service, at=observation.at,
            trigger={"event_id": received.id, "event_type": received.event_type, "request_id": request_id,
                     "priority": observation.priority})
        await self._execute(command, received, "emergency")


def _request_of(received: ReceivedEvent) -> str | None:
    value = received.data.get("request_id")
    return value if isinstance(value, str) else None

"""Risk signals: other services' events (read through a tolerant reader) -> observations -> rules -> commands.

`SignalDriver` keeps, in the `reactions` schema (outside the disposable read models), what it needs to judge:
the team, service and priority of each request as the SLA monitor last announced them, every observation
(breach, incident, satisfaction answer) by upstream event id, and the open risk of each rule's subject.

It judges a consumer batch at a time (`apply_batch`; `apply` is a batch of one): for each event in arrival
order, every rule is evaluated as of the subject's newest observation, exactly as if the events came one by
one, but the memory is read and written once per batch and rule instead of once per event, and the signals
of one subject are coalesced into one `RecordSignal` (the last evaluation's score, the union of the
evidence). A P1 breach, a P1 incident, or an incident whose priority an override raised to P1 issues
`ActivateEmergency` for the matching plan (once per plan and request). The batch's commands are decided
together and written with one statement in the transaction that marks the batch processed (the kit's
command batch), and evidence already recorded on a risk adds nothing, so a replayed topic issues nothing new.
"""

from __future__ import annotations

import bisect
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import fields, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    func,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.common.bulk import insert_rows
from opsat.common.consumer import ReceivedEvent, processed_events_table
from opsat.common.db import REACTIONS_SCHEMA
from opsat.common.domain import DomainError, Instant
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
    at: Instant


class Submitted(_Upstream):
    event_type: ClassVar[str] = "opsat.intake.request.submitted"
    kind: str
    priority: str
    service: str | None = None
    team: str | None = None


class PriorityOverridden(_Upstream):
    """Staff raised or lowered a request's priority: raised to P1, an incident is a P1 incident from then on."""

    event_type: ClassVar[str] = "opsat.intake.request.priority_overridden"
    priority: str
    previous_priority: str


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


class SurveyAnswered(ForeignEvent):
    """A satisfaction answer (feedback service): its 0-100 score and the team it rates. Relationship surveys
    (a campaign's, about no request) name no team and count for no team's CSAT."""

    event_type: ClassVar[str] = "opsat.feedback.survey.answered"
    survey_id: str
    score: float
    at: Instant
    team: str | None = None
    assignee: str | None = None
    request_id: str | None = None
    campaign_id: str | None = None


UPSTREAM_READS: tuple[type[ForeignEvent], ...] = (Submitted, PriorityOverridden, ClockStarted, ResponseMet,
                                                  TeamChanged, Retargeted, Breached, SurveyAnswered)
_READER_OF = {cls.event_type: cls for cls in UPSTREAM_READS}
_READ_CLASSES = frozenset(UPSTREAM_READS)
_CLOCK_FACTS = frozenset({Breached, ClockStarted, ResponseMet, TeamChanged, Retargeted})  # read the request's facts


# --- what the driver remembers -------------------------------------------------------------------------
def signal_metadata() -> MetaData:
    metadata = MetaData(schema=REACTIONS_SCHEMA)
    processed_events_table(metadata, schema=REACTIONS_SCHEMA)
    Table("signal_requests", metadata,
          Column("request_id", String, primary_key=True), Column("kind", String), Column("priority", String),
          Column("team", String), Column("service", String), Column("sequence", Integer, nullable=False))
    Table("signal_observations", metadata,
          Column("event_id", String, primary_key=True), Column("source", String, nullable=False),
          Column("at", DateTime(timezone=True), nullable=False), Column("team", String),
          Column("service", String), Column("kind", String), Column("priority", String),
          Column("value", Float), Column("request_id", String),
          # A counting rule reads one source's subjects within its window: bounded by the window, not by
          # everything the team or service was ever observed doing (migration 0003).
          Index("signal_observations_team_at", "source", "team", "at"),
          Index("signal_observations_service_at", "source", "service", "at"))
    Table("signal_subjects", metadata,
          Column("subject_key", String, primary_key=True), Column("risk_id", String, nullable=False))
    return metadata


SIGNAL_METADATA = signal_metadata()
_T = SIGNAL_METADATA.tables
REQUESTS = _T[f"{REACTIONS_SCHEMA}.signal_requests"]
OBSERVATIONS = _T[f"{REACTIONS_SCHEMA}.signal_observations"]
SUBJECTS = _T[f"{REACTIONS_SCHEMA}.signal_subjects"]
_FACTS = ("kind", "priority", "team", "service")
_FACT_COLUMNS = ("request_id", *_FACTS, "sequence")


def _upsert_facts() -> Any:
    """The batch's changed facts as column arrays, one statement of constant shape (no per-row parameters); a row
    moves only forward (a higher sequence)."""
    arrays = [func.unnest(bindparam(name, type_=ARRAY(Integer if name == "sequence" else String)))
              for name in _FACT_COLUMNS]
    statement = insert(REQUESTS).from_select(list(_FACT_COLUMNS), select(*arrays))
    return statement.on_conflict_do_update(index_elements=[REQUESTS.c.request_id],
                                           set_={name: statement.excluded[name] for name in (*_FACTS, "sequence")},
                                           where=REQUESTS.c.sequence < statement.excluded.sequence)


_UPSERT_FACTS = _upsert_facts()
_OBSERVATION_FIELDS = tuple(f.name for f in fields(Observation))
# The stored columns of an `Observation`, in its fields' order (rows become observations positionally).
_OBSERVATION_COLUMNS = tuple(OBSERVATIONS.c[name] for name in _OBSERVATION_FIELDS)
_new_object = object.__new__


def _observation_of(row: Sequence[Any]) -> Observation:
    """A stored row (`_OBSERVATION_COLUMNS`) as an `Observation`, every field given, without the frozen dataclass's
    per-field setattr (thousands per batch): the same instance as `Observation(*row)`."""
    observation = _new_object(Observation)
    observation.__dict__.update(zip(_OBSERVATION_FIELDS, row, strict=True))
    return observation


def _read(received: ReceivedEvent) -> ForeignEvent | None:
    if type(received.event) in _READ_CLASSES:  # read by the runner as it decoded the poll (`SignalDriver.reads`)
        return received.event  # type: ignore[no-any-return]
    reader = _READER_OF.get(received.event_type)
    return reader.read(received) if reader is not None and reader.matches(received) else None


def _order(o: Observation) -> tuple[datetime, str]:
    return o.at, o.event_id


class _Pool:
    """One subject's observations in time order (by event id when simultaneous), so that each evaluation is handed
    only what its window or last N can see as of the newest one, not the whole pool again."""

    def __init__(self, stored: Sequence[Observation] = ()) -> None:
        """Starting from stored observations (distinct events), sorted once rather than inserted one by one."""
        self.ordered: list[Observation] = sorted(stored, key=_order)
        self.ids: set[str] = {o.event_id for o in stored}

    def add(self, o: Observation) -> None:
        if o.event_id in self.ids:  # the same event again (stored and in the batch): the later copy counts
            self.ordered = [kept for kept in self.ordered if kept.event_id != o.event_id]
        self.ids.add(o.event_id)
        bisect.insort(self.ordered, o, key=_order)

    def newest(self) -> Observation:
        return self.ordered[-1]

    def visible_to(self, rule: SignalRule) -> list[Observation]:
        """What `rule.evaluate` as of the newest observation looks at: those inside its window, and of them the
        last N in "mean of the last N" mode (the rule filters the same way; this only spares it the rest)."""
        first = 0
        if rule.window_seconds is not None:
            since = self.ordered[-1].at - timedelta(seconds=rule.window_seconds)
            first = bisect.bisect_right(self.ordered, since, key=lambda o: o.at)
        if rule.last_n is not None:
            first = max(first, len(self.ordered) - rule.last_n)
        return self.ordered[first:]


class SignalDriver(CommandReaction):
    name: ClassVar[str] = "risk_signals"
    sources: ClassVar[tuple[str, ...]] = ("intake", "sla", "feedback")
    command: ClassVar[type] = c.RecordSignal
    reads: ClassVar[tuple[type[ForeignEvent], ...]] = UPSTREAM_READS
    handles: ClassVar[tuple[type, ...]] = UPSTREAM_READS

    def __init__(self, *topics: str) -> None:
        super().__init__(*topics)
        self.metadata = SIGNAL_METADATA
        self._book: tuple[float, dict[str, SignalRule], dict[str, plans.Plan]] | None = None

    def command_for(self, received: ReceivedEvent) -> Any | None:
        return None  # one event may call for several commands: `apply_batch` issues them

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        await self.apply_batch(conn, [received])

    async def apply_batch(self, conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> None:
        """The events in arrival order: the same decisions as one at a time, one command per subject."""
        reads = [(received, read) for received in events if (read := _read(received)) is not None]
        if not reads:
            return
        observations, activations = await self.observe(conn, reads)
        commands: list[tuple[Any, ReceivedEvent]] = []
        if observations:
            rules, _ = await self.configuration(conn)
            fired = await self.evaluate(conn, rules, observations)
            risk_ids = await self.open_risks(conn, [(signal, first) for _, first, signal in fired])
            commands += [(c.RecordSignal(risk_id=risk_ids[signal.key], signal=signal), last)
                         for last, _, signal in fired]
            await insert_rows(conn, OBSERVATIONS, on_conflict_do_nothing=True, rows=[
                {"event_id": o.event_id, "source": o.source, "at": o.at, "team": o.team, "service": o.service,
                 "kind": o.kind, "priority": o.priority, "value": o.value, "request_id": _request_of(received)}
                for received, o in observations])
        if activations:
            commands += await self.activations(conn, activations)
        # Each command is on a stream of its own (one per subject, one per plan and request), read in one query.
        assert self.handler is not None, "the service kit sets the handler"
        batch = self.handler.batch(conn)
        await batch.load([getattr(command, self.handler.aggregate_for(type(command)).id_field)
                          for command, _ in commands])
        for command, received in commands:
            outcome = await batch.execute(command, self.actor, self.meta(received))
            if isinstance(outcome, DomainError):  # the domain says no (already recorded, already active): a decision
                log.info("reaction %s: %s refused for event %s: %s", self.name, type(command).__name__,
                         received.id, outcome.detail)
        await batch.commit()

    # --- upstream events -> the requests' facts, observations and activations ------------------------------
    async def observe(self, conn: AsyncConnection, reads: list[tuple[ReceivedEvent, ForeignEvent]]
                      ) -> tuple[list[tuple[ReceivedEvent, Observation]],
                                 list[tuple[ReceivedEvent, Observation, str]]]:
        """Folds the batch into the requests' facts (written once) and returns its observations and the
        P1 moments that activate a plan, each as one event at a time would have seen them."""
        # Dispatch on the exact reader class: a class pattern on a pydantic model is an ABC check, slow per event.
        facts = await self._facts(conn, {read.request_id for _, read in reads
                                         if type(read) in _CLOCK_FACTS})
        incidents = await self._incidents(conn, {read.request_id for _, read in reads
                                                 if type(read) is PriorityOverridden and read.priority == "P1"})
        changed: dict[str, dict[str, Any]] = {}

        def remember(received: ReceivedEvent, request_id: str, **known: Any) -> None:
            """A request's latest team, service and priority (events of one clock arrive in order)."""
            row = facts.get(request_id)
            if row is not None and row["sequence"] >= received.sequence:
                return
            row = {**(row or dict.fromkeys(_FACTS)), **known, "request_id": request_id, "sequence": received.sequence}
            facts[request_id] = changed[request_id] = row

        observations: list[tuple[ReceivedEvent, Observation]] = []
        activations: list[tuple[ReceivedEvent, Observation, str]] = []
        for received, read in reads:
            observation: Observation | None = None
            reader = type(read)
            if reader is Breached:
                known = facts.get(read.request_id) or {}
                observation = Observation(event_id=received.id, source="sla_breach", at=read.at,
                                          team=known.get("team"), service=known.get("service"),
                                          kind=known.get("kind"), priority=known.get("priority"))
            elif reader is Submitted:
                observation = Observation(event_id=received.id, source="incident", at=read.at, team=read.team,
                                          service=read.service, kind=read.kind, priority=read.priority)
                incidents[read.request_id] = observation
            elif reader is SurveyAnswered:
                if read.team:
                    observation = Observation(event_id=received.id, source="feedback_response", at=read.at,
                                              team=read.team, value=read.score)
            elif reader is ClockStarted:
                remember(received, read.request_id, kind=read.kind, priority=read.priority, team=read.team,
                         service=read.service)
            elif reader is ResponseMet:
                if read.team:
                    remember(received, read.request_id, team=read.team)
            elif reader is TeamChanged:
                remember(received, read.request_id, team=read.team)
            elif reader is Retargeted:
                remember(received, read.request_id, priority=read.priority)
            elif reader is PriorityOverridden:
                if read.priority == "P1" and read.previous_priority != "P1":
                    submitted = incidents.get(read.request_id)
                    if submitted is not None and submitted.kind == "incident":  # as if it had been submitted P1
                        activations.append((received, replace(submitted, event_id=received.id, at=read.at,
                                                              priority="P1"), read.request_id))
            if observation is None:
                continue
            observations.append((received, observation))
            request_id = _request_of(received)
            if request_id is not None and observation.priority == "P1" and (
                    observation.source == "sla_breach" or observation.kind == "incident"):
                activations.append((received, observation, request_id))
        if changed:
            rows = list(changed.values())
            await conn.execute(_UPSERT_FACTS, {name: [row[name] for row in rows] for name in _FACT_COLUMNS})
        return observations, activations

    async def _facts(self, conn: AsyncConnection, request_ids: set[str]) -> dict[str, dict[str, Any]]:
        if not request_ids:
            return {}
        rows = await conn.execute(select(REQUESTS).where(REQUESTS.c.request_id == func.any(_array(request_ids))))
        return {row["request_id"]: dict(row) for row in rows.mappings()}

    async def _incidents(self, conn: AsyncConnection, request_ids: set[str]) -> dict[str, Observation]:
        """The submission of each request (an 'incident' observation, whatever the request's kind)."""
        if not request_ids:
            return {}
        o = OBSERVATIONS.c
        rows = await conn.execute(select(OBSERVATIONS).where(
            o.source == "incident", o.request_id == func.any(_array(request_ids))))
        return {row["request_id"]: _observation(row) for row in rows.mappings()}

    # --- rules ---------------------------------------------------------------------------------------------
    async def evaluate(self, conn: AsyncConnection, rules: dict[str, SignalRule],
                       observations: list[tuple[ReceivedEvent, Observation]]
                       ) -> list[tuple[ReceivedEvent, ReceivedEvent, Signal]]:
        """Each rule over the batch, event by event as of the subject's newest observation; per subject, the
        signals it fired coalesced into one: the last evaluation with the union of the evidence. With it, the
        last event that fired (the command's key: a redelivered batch reaching further issues the rest) and
        the first (a risk it raises is named after it, as one event at a time would name it)."""
        fired: list[tuple[ReceivedEvent, ReceivedEvent, Signal]] = []
        watched = {rule: mine for rule in sorted(rules.values(), key=lambda r: r.rule_id)
                   if (mine := [(received, o, subject) for received, o in observations
                                if (subject := rule.subject_of(o))])}
        shared = await self.count_history(conn, {rule: [o for _, o, _ in mine] for rule, mine in watched.items()
                                                 if rule.mode == "count"})
        for rule, mine in watched.items():
            stored = shared[rule.source] if rule.mode == "count" else await self.history(conn, rule,
                                                                                         [o for _, o, _ in mine])
            by_subject: dict[str, list[Observation]] = defaultdict(list)
            for kept in stored:
                if (subject := rule.subject_of(kept)) is not None:
                    by_subject[subject].append(kept)
            pools: dict[str, _Pool] = defaultdict(_Pool)
            pools.update((subject, _Pool(kept)) for subject, kept in by_subject.items())
            # Per subject, each firing (what `judge` would cite); only the last becomes a signal.
            firings: dict[str, list[tuple[ReceivedEvent, list[Observation], float]]] = {}
            for received, o, subject in mine:
                pool = pools[subject]
                pool.add(o)
                # As of the subject's newest observation: events of one subject arrive from several partitions,
                # so the last to arrive is not always the latest.
                firing = rule.firing(pool.newest(), pool.visible_to(rule))
                if firing is not None:
                    firings.setdefault(subject, []).append((received, *firing))
            for subject, found in firings.items():
                last, inside, observed = found[-1]
                evidence = tuple(dict.fromkeys(kept.event_id for _, cited, _ in found for kept in cited))
                fired.append((last, found[0][0], replace(rule.signal(subject, inside, observed), evidence=evidence)))
        return fired

    async def count_history(self, conn: AsyncConnection, batches: dict[SignalRule, list[Observation]]
                            ) -> dict[str, list[Observation]]:
        """Per source, the stored observations any of its counting rules' windows can see as of the batch's
        observations, for those rules' subjects: one query per source instead of one per rule (a superset of
        each rule's own `history`; its pools take only its subjects and its windows trim the rest)."""
        o = OBSERVATIONS.c
        found: dict[str, list[Observation]] = {}
        for source in sorted({rule.source for rule in batches}):
            mine = {rule: batch for rule, batch in batches.items() if rule.source == source}
            names: dict[str, set[str]] = {"team": set(), "service": set()}
            since = None
            for rule, batch in mine.items():
                names[rule.subject].update(getattr(b, rule.subject) for b in batch)
                assert rule.window_seconds is not None  # a counting rule has a window
                start = min(b.at for b in batch) - timedelta(seconds=rule.window_seconds)
                since = start if since is None else min(since, start)
            subjects = [column == func.any(_array(names[name])) for name, column in (("team", o.team),
                                                                                     ("service", o.service))
                        if names[name]]
            rows = await conn.execute(select(*_OBSERVATION_COLUMNS).where(o.source == source, o.at > since,
                                                                          or_(*subjects)))
            found[source] = [_observation_of(row) for row in rows]
        return found

    async def history(self, conn: AsyncConnection, rule: SignalRule, batch: list[Observation]) -> list[Observation]:
        """The stored observations of the rule's source and the batch's subjects that a window or last N as of
        any of the batch's observations can see (a superset: `SignalRule.evaluate` picks)."""
        o = OBSERVATIONS.c
        column = o.team if rule.subject == "team" else o.service
        names = {getattr(b, rule.subject) for b in batch}
        kinds = {b.kind for b in batch if b.kind is not None}
        since = [o.at > min(b.at for b in batch) - timedelta(seconds=rule.window_seconds)] \
            if rule.window_seconds is not None else []
        if rule.mode == "count":
            conditions = [o.source == rule.source, column == func.any(_array(names)), *since]
            if rule.per_kind:
                conditions.append(o.kind == func.any(_array(kinds)))
            rows = await conn.execute(select(*_OBSERVATION_COLUMNS).where(*conditions))
            return [_observation_of(row) for row in rows]
        # The newest last N of each subject (and kind), with room for some arriving late: read subject by subject
        # from the (source, subject, at) index, newest first, so a subject's older history is never read.
        keys = select(func.unnest(_array(names)).label("name")).subquery("names")
        if rule.per_kind:
            kind_list = select(func.unnest(_array(kinds)).label("kind")).subquery("kinds")
            keys = select(keys.c.name, kind_list.c.kind).select_from(keys.join(kind_list, true())).subquery("keys")
        conditions = [o.source == rule.source, column == keys.c.name, *since]
        if rule.per_kind:
            conditions.append(o.kind == keys.c.kind)
        recent = (select(*_OBSERVATION_COLUMNS).where(*conditions).order_by(o.at.desc(), o.event_id.desc())
                  .limit(4 * (rule.last_n or 1)).lateral("recent"))
        rows = await conn.execute(select(*(recent.c[c.name] for c in _OBSERVATION_COLUMNS))
                                  .select_from(keys.join(recent, true())))
        return [_observation_of(row) for row in rows]

    async def configuration(self, conn: AsyncConnection) -> tuple[dict[str, SignalRule], dict[str, plans.Plan]]:
        now = time.monotonic()
        if self._book is None or now - self._book[0] > RULES_MAX_AGE_S:
            assert self.handler is not None, "the service kit sets the handler"
            store = self.handler.store
            self._book = (now, await configuration.rule_book(conn, store), await configuration.plan_book(conn, store))
        return self._book[1], self._book[2]

    # --- commands ---------------------------------------------------------------------------------------
    async def open_risks(self, conn: AsyncConnection, signals: list[tuple[Signal, ReceivedEvent]]) -> dict[str, str]:
        """Per subject key, its open risk, or a new id claimed for it (derived from the event that raised it).
        The claim is a conditional write on the subject's row: a replica claiming the same subject concurrently
        waits for this transaction and then takes ours."""
        if not signals:
            return {}
        keys = sorted({signal.key for signal, _ in signals})
        known = {row[0]: row[1] for row in await conn.execute(select(SUBJECTS.c.subject_key, SUBJECTS.c.risk_id).where(
            SUBJECTS.c.subject_key == func.any(_array(keys))))}
        open_ids = await self._still_open(conn, set(known.values()))
        found: dict[str, str] = {}
        for signal, first in signals:
            current = known.get(signal.key)
            if current is not None and current in open_ids:
                found[signal.key] = current
                continue
            key = SUBJECTS.c.subject_key == signal.key
            minted = str(uuid.uuid5(RISKS, f"{signal.key}:{first.id}"))
            if current is None:
                claim = insert(SUBJECTS).values(subject_key=signal.key, risk_id=minted).on_conflict_do_nothing()
            else:  # the last one was accepted or closed: a new risk replaces it
                claim = update(SUBJECTS).where(key, SUBJECTS.c.risk_id == current).values(risk_id=minted)
            if (await conn.execute(claim.returning(SUBJECTS.c.risk_id))).scalar() is not None:
                found[signal.key] = minted
            else:  # another replica's
                found[signal.key] = (await conn.execute(select(SUBJECTS.c.risk_id).where(key))).scalar_one()
        return found

    async def _still_open(self, conn: AsyncConnection, risk_ids: set[str]) -> set[str]:
        """Those of the risks whose latest event leaves them open (or that have none yet: a claim whose command
        has not committed is the subject's risk all the same)."""
        if not risk_ids:
            return set()
        rows = await conn.execute(text(
            "select distinct on (stream_id) stream_id, data->>'status' from events where stream_type = 'risk'"
            " and stream_id = any(:ids) order by stream_id, version desc"), {"ids": sorted(risk_ids)})
        status = {row[0]: row[1] for row in rows}
        return {risk_id for risk_id in risk_ids if status.get(risk_id, "identified") in register.OPEN}

    async def activations(self, conn: AsyncConnection, moments: list[tuple[ReceivedEvent, Observation, str]]
                          ) -> list[tuple[Any, ReceivedEvent]]:
        """`ActivateEmergency` for the matching plan of each P1 moment, the first of each plan and request only,
        naming who is on call for each step's role at that moment."""
        assert self.handler is not None
        _, book = await self.configuration(conn)
        rotas: dict[str, Any] | None = None
        commands: list[tuple[Any, ReceivedEvent]] = []
        activated: set[str] = set()
        for received, observation, request_id in moments:
            source = "breach" if observation.source == "sla_breach" else "incident"
            plan = plans.choose(book.values(), source, observation.priority, observation.team, observation.service)
            if plan is None:
                continue
            emergency_id = configuration.emergency_id_for(plan.plan_id, request_id)
            if emergency_id in activated:
                continue
            activated.add(emergency_id)
            if rotas is None:
                rotas = await configuration.rota_book(conn, self.handler.store)
            what = "SLA breach" if source == "breach" else "incident"
            command = c.ActivateEmergency(
                emergency_id=emergency_id, plan=plan, on_call=configuration.on_call(rotas, plan, observation.team,
                                                                                    observation.at),
                reason=f"P1 {what} of request {request_id}", team=observation.team, service=observation.service,
                trigger={"event_id": received.id, "event_type": received.event_type, "request_id": request_id,
                         "priority": observation.priority})
            commands.append((command, received))
        return commands


def _request_of(received: ReceivedEvent) -> str | None:
    value = received.data.get("request_id")
    return value if isinstance(value, str) else None


def _array(values: Iterable[Any]) -> Any:
    return bindparam(None, sorted(values), type_=ARRAY(String), unique=True)


def _observation(row: Any) -> Observation:
    return Observation(event_id=row["event_id"], source=row["source"], at=row["at"], team=row["team"],
                       service=row["service"], kind=row["kind"], priority=row["priority"], value=row["value"])

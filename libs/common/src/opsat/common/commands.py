"""Command plumbing every service shares: HTTP headers -> `CommandMeta`, load -> decide -> append, routes.

A service supplies an `Aggregate` (its pure `decide`/`evolve` plus the stream's type, id field and
tenant) and declares each command route in one line on a `CommandRouter`. Commands may say, as class
attributes, that they start a stream (`creates_stream`: no load), that they create or change one
(`may_create`: loaded, and a missing stream is the domain's to judge), that some fields name other streams which
must exist (`references`), or that some id fields are minted by the server when absent
(`generated_ids`). No service-specific `isinstance` checks live here.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.common import observability as obs
from opsat.common import tracing
from opsat.common.auth import require
from opsat.common.domain import (
    Actor,
    CommandContext,
    DomainError,
    DomainEvent,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    Role,
)
from opsat.common.envelope import EventMetadata
from opsat.common.eventstore import (
    AppendResult,
    ConcurrencyConflict,
    Idempotency,
    NewEvent,
    RecordedEvent,
    StreamStore,
    fold,
)
from opsat.common.ids import new_id


@dataclass(frozen=True)
class CommandMeta:
    """Everything about a command that is not the command: tracing, retries, the version the client saw."""

    correlation_id: str
    traceparent: str | None = None
    idempotency_key: str | None = None
    expected_version: int | None = None  # If-Match
    causation_id: str | None = None  # the event that caused it (reactions)
    fingerprint: Any = None  # what makes a repeat under the same Idempotency-Key "the same request"


class Aggregate(Protocol):
    """One kind of stream: what the generic handler needs to know of a service's domain."""

    stream_type: str
    id_field: str  # the command field naming the stream, e.g. "request_id"
    commands: frozenset[type]  # every command class `decide` has a rule for

    def decide(self, state: Any, command: Any, ctx: CommandContext) -> Sequence[DomainEvent]: ...

    def evolve(self, state: Any, event: DomainEvent) -> Any: ...

    def tenant(self, state: Any, command: Any, actor: Actor) -> str:
        """The organisation the stream belongs to (stored with every event)."""
        ...

    # Optional: `async def prepare(self, command, state, store) -> command` looks up what a decision needs from
    # this service's own tables (e.g. its projection of another service's configuration) and returns the
    # command carrying it; called after the checks of tenant and If-Match, before `decide`.


class AggregateSet:
    """Several kinds of stream in one service (e.g. calendars, policies and clocks): subclasses list the
    aggregate classes in `members`; each command goes to the member whose `commands` name it."""

    members: tuple[type, ...] = ()
    commands: frozenset[type] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.commands = frozenset().union(*(m.commands for m in cls.members))

    def __init__(self, settings: Any) -> None:
        self._by_command = {c: member for member in (m(settings) for m in self.members) for c in member.commands}

    def for_command(self, command_cls: type) -> Aggregate:
        return self._by_command[command_cls]


def utcnow() -> datetime:
    return datetime.now(UTC)


CONFLICT_ATTEMPTS = 3  # a command without If-Match is decided again this often when it loses a race


class CommandHandler:
    """load -> decide -> append, for any aggregate, judging in this order: the caller's own earlier result under
    the Idempotency-Key; the stream exists and its tenant is visible to the actor (else 404, the same answer as
    for an unknown id); If-Match (412); then the domain's rules and the input (`decide`)."""

    def __init__(self, service: str, store: StreamStore, aggregate: Aggregate,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.service = service
        self.store = store
        self.aggregate = aggregate
        self.clock = clock

    def aggregate_for(self, command_cls: type) -> Aggregate:
        """The aggregate deciding `command_cls`: the service's one, or the member of an `AggregateSet` naming it."""
        pick = getattr(self.aggregate, "for_command", None)
        return pick(command_cls) if pick is not None else self.aggregate

    async def judge_stream(self, command_cls: type, stream_id: str, actor: Actor,
                           expected_version: int | None) -> None:
        """The checks before input, for a command whose input could not be read (malformed or too large): the
        stream exists and is visible to the actor (else 404), and If-Match names its version (else 412)."""
        if getattr(command_cls, "creates_stream", False):
            return
        aggregate = self.aggregate_for(command_cls)
        history = await self.store.load(stream_id)
        if not history:
            if getattr(command_cls, "may_create", False):
                return  # nothing exists to hide; the input decides
            raise NotFound(f"{aggregate.stream_type} {stream_id!r} not found")
        if not actor.sees(_tenant_of(aggregate, history, actor)):
            raise NotFound(f"{aggregate.stream_type} {stream_id!r} not found")
        if expected_version is not None and expected_version != history[-1].version:
            raise PreconditionFailed(f"If-Match names version {expected_version}; reload the "
                                     f"{aggregate.stream_type} and retry", code="version_mismatch")

    async def execute(self, command: Any, actor: Actor, meta: CommandMeta) -> AppendResult:
        aggregate = self.aggregate_for(type(command))
        stream_id = getattr(command, aggregate.id_field)
        idempotency = None
        if meta.idempotency_key:
            idempotency = Idempotency.for_request(meta.idempotency_key, actor, type(command).__name__,
                                                  meta.fingerprint)
            stored = await self.store.idempotent_result(idempotency)
            if stored is not None:
                return stored
        creates = getattr(command, "creates_stream", False)
        # A command that names no version is decided again on the new state when another writer (a worker's
        # reaction, another replica) appended first: the caller asked for the change, not for a version.
        attempts = 1 if creates or meta.expected_version is not None else CONFLICT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                result = await self._decide_and_append(aggregate, stream_id, command, actor, meta, creates,
                                                       idempotency)
                break
            except ConcurrencyConflict:
                if meta.expected_version is not None:
                    # The version the client named was current when read and is no longer: its precondition failed.
                    raise PreconditionFailed(f"the {aggregate.stream_type} changed since version "
                                             f"{meta.expected_version}; reload and retry",
                                             code="version_conflict") from None
                if attempt == attempts:
                    raise
        if not result.replayed:
            obs.EVENTS_APPENDED.labels(self.service).inc(len(result.event_ids))
        return result

    async def _decide_and_append(self, aggregate: Aggregate, stream_id: str, command: Any, actor: Actor,
                                 meta: CommandMeta, creates: bool, idempotency: Idempotency | None) -> AppendResult:
        """load → checks → decide → append, once; a lost race raises ConcurrencyConflict."""
        history = [] if creates else await self.store.load(stream_id)
        state = fold(aggregate.evolve, history)
        current = history[-1].version if history else 0

        async def exists(referenced: str) -> bool:
            return await self.store.stream_version(referenced) > 0

        events, tenant = await self.judge(aggregate, stream_id, state, bool(history), current, command, actor, meta,
                                          exists)
        metadata = EventMetadata(actor=actor.id, tenant=tenant, correlation_id=meta.correlation_id,
                                 causation_id=meta.causation_id, traceparent=meta.traceparent)
        with (tracing.span(f"append {aggregate.stream_type}", attributes={"opsat.stream_id": stream_id})
              if tracing.active() else tracing.NO_SPAN):
            return await self.store.append(stream_id, aggregate.stream_type, current, events, metadata, idempotency)

    async def judge(self, aggregate: Aggregate, stream_id: str, state: Any, exists: bool, version: int, command: Any,
                    actor: Actor, meta: CommandMeta, reference_exists: Callable[[str], Awaitable[bool]]
                    ) -> tuple[Sequence[DomainEvent], str]:
        """The checks after the Idempotency-Key, in order, then the decision: the stream exists and the actor sees
        its tenant (else 404, as for an unknown id), If-Match (412), referenced streams exist (404 naming the
        field), `prepare`, `decide`. Returns the events and the tenant they are stored with."""
        missing = not exists and not getattr(command, "may_create", False)
        if not getattr(command, "creates_stream", False) and (
                missing or not actor.sees(aggregate.tenant(state, command, actor))):
            raise NotFound(f"{aggregate.stream_type} {stream_id!r} not found")
        if meta.expected_version is not None and meta.expected_version != version:
            raise PreconditionFailed(f"If-Match names version {meta.expected_version}; reload the "
                                     f"{aggregate.stream_type} and retry", code="version_mismatch")
        for name in getattr(command, "references", ()):
            if not await reference_exists(getattr(command, name)):
                raise NotFound(f"{aggregate.stream_type} {getattr(command, name)} not found", field=name)
        prepare = getattr(aggregate, "prepare", None)
        if prepare is not None:  # I/O a decision needs beyond the stream happens here, so `decide` stays pure
            command = await prepare(command, state, self.store)
        events = aggregate.decide(state, command, CommandContext(actor=actor, now=self.clock()))
        return events, aggregate.tenant(state, command, actor)

    def batch(self, conn: AsyncConnection) -> CommandBatch:
        """Commands decided one after another and written together in the caller's transaction (see CommandBatch)."""
        return CommandBatch(self, self.store, conn)  # type: ignore[arg-type]  # EventStore, or the memory store


class BatchStore(StreamStore, Protocol):
    """A store that reads and writes in the caller's transaction (`EventStore`; the memory store for unit tests)."""

    async def load_in(self, conn: AsyncConnection, stream_ids: Any) -> dict[str, list[RecordedEvent]]: ...

    async def append_in(self, conn: AsyncConnection, events: Sequence[NewEvent]) -> dict[str, int]: ...


@dataclass
class _Stream:
    """A stream as a batch knows it: its state after the commands decided so far."""

    state: Any
    version: int
    exists: bool


class CommandBatch:
    """Commands of a worker decided in order and written with one statement in the caller's transaction.

    A consumer's batch of upstream events (or a round of due deadlines) becomes its commands' events in the same
    commit that marks the batch done: exactly once without an Idempotency-Key or a transaction per command. The
    judging is the handler's (404, tenant, If-Match, references, `prepare`, `decide`); commands on one stream see
    the events of those before them. `execute` answers with the command's result (its position comes with
    `commit`) or the `DomainError` refusing it, and the others go on. If another writer appended to one of the
    streams meanwhile, `commit` raises `StreamsMoved` (transient): the caller's transaction is run again.
    """

    def __init__(self, handler: CommandHandler, store: BatchStore, conn: AsyncConnection) -> None:
        self.handler = handler
        self.store = store
        self.conn = conn
        self._streams: dict[str, _Stream] = {}
        self._histories: dict[str, list[RecordedEvent]] = {}
        self._new: list[NewEvent] = []

    async def load(self, stream_ids: Any) -> None:
        """Read these streams in one query (the rest are read one by one when a command names them)."""
        wanted = [s for s in dict.fromkeys(stream_ids) if s not in self._histories and s not in self._streams]
        if wanted:
            found = await self.store.load_in(self.conn, wanted)
            for stream_id in wanted:
                self._histories[stream_id] = found.get(stream_id, [])

    def history(self, stream_id: str) -> list[RecordedEvent]:
        """The stored events of a loaded stream (not those this batch adds)."""
        return self._histories[stream_id]

    def state(self, aggregate: Aggregate, stream_id: str) -> Any:
        """A loaded stream's state after the commands decided so far (None: no such stream)."""
        return self._stream(aggregate, stream_id).state

    def _stream(self, aggregate: Aggregate, stream_id: str) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            history = self._histories[stream_id]
            stream = _Stream(fold(aggregate.evolve, history), history[-1].version if history else 0, bool(history))
            self._streams[stream_id] = stream
        return stream

    async def execute(self, command: Any, actor: Actor, meta: CommandMeta) -> AppendResult | DomainError:
        aggregate = self.handler.aggregate_for(type(command))
        stream_id = getattr(command, aggregate.id_field)
        await self.load([stream_id])
        try:
            stream = self._stream(aggregate, stream_id)
            events, tenant = await self._decide(aggregate, stream, stream_id, command, actor, meta)
        except DomainError as exc:
            return exc
        metadata = EventMetadata(actor=actor.id, tenant=tenant, correlation_id=meta.correlation_id,
                                 causation_id=meta.causation_id, traceparent=meta.traceparent)
        state, event_ids = stream.state, []
        for offset, event in enumerate(events, start=1):
            event_id = new_id()
            self._new.append(NewEvent(stream_id, aggregate.stream_type, stream.version + offset, event_id, event,
                                      metadata))
            event_ids.append(event_id)
            state = aggregate.evolve(state, event)
        stream.state, stream.version, stream.exists = state, stream.version + len(events), True
        return AppendResult(stream_id, stream.version, 0, tuple(event_ids))

    async def _decide(self, aggregate: Aggregate, stream: _Stream, stream_id: str, command: Any, actor: Actor,
                      meta: CommandMeta) -> tuple[Sequence[DomainEvent], str]:
        """The handler's judging, on the batch's state of the stream."""
        if getattr(command, "creates_stream", False) and stream.exists:
            raise ConcurrencyConflict(f"{aggregate.stream_type} {stream_id!r} exists", code="version_conflict")
        events, tenant = await self.handler.judge(aggregate, stream_id, stream.state, stream.exists, stream.version,
                                                  command, actor, meta, self._exists)
        if not events:
            raise ValueError("a command must produce at least one event")
        return events, tenant

    async def _exists(self, stream_id: str) -> bool:
        """A stream is there: stored, or created by a command of this batch."""
        await self.load([stream_id])
        known = self._streams.get(stream_id)
        return known.exists if known is not None else bool(self._histories[stream_id])

    async def commit(self) -> dict[str, int]:
        """Write the events decided so far (one statement); event id -> position."""
        new, self._new = self._new, []
        positions = await self.store.append_in(self.conn, new)
        if new:
            obs.EVENTS_APPENDED.labels(self.handler.service).inc(len(new))
        return positions


def _tenant_of(aggregate: Aggregate, history: Sequence[RecordedEvent], actor: Actor) -> str:
    """An existing stream's tenant without a command: the aggregate's answer from the state, or the tenant
    stored with its last event where the aggregate needs the command to say."""
    try:
        return aggregate.tenant(fold(aggregate.evolve, history), None, actor)
    except AttributeError:
        return str(history[-1].metadata.get("tenant", ""))


# --- HTTP ------------------------------------------------------------------------------------------------

_ETAG = re.compile(r'^"(\d{1,9})"$')  # a strong entity tag: the version in quotes


def _if_match(value: str | None) -> int | None:
    if value is None or value == "*":  # `*`: any current version (the stream must exist all the same)
        return None
    match = _ETAG.match(value)
    if not match:
        raise InvalidInput('If-Match must be a version in quotes, such as "3", or *', field="If-Match")
    return int(match.group(1))


# Typed `str` (absent: None) so the schema says "a string", not "a string or null": a header is always text,
# and "null" in the schema invites clients and fuzzers to send a value (e.g. 0) that reads as a valid key.
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=200,
                                       description="repeat a command safely: the first result is returned")]
IfMatch = Annotated[str | None, Header(alias="If-Match", pattern=r'^(\*|"\d{1,9}")$',
                                       description='act only on this version, e.g. "3" (the ETag a command or '
                                                   'a read returned); `*`: any version. Otherwise 412.')]


async def creation_meta(request: Request, idempotency_key: IdempotencyKey = None,  # type: ignore[assignment]
                        ) -> CommandMeta:
    """For commands that create a stream: there is no version to match yet."""
    return CommandMeta(correlation_id=obs.correlation_id.get() or "",
                       traceparent=request.scope.get("state", {}).get("traceparent"), idempotency_key=idempotency_key)


async def command_meta(request: Request, idempotency_key: IdempotencyKey = None,  # type: ignore[assignment]
                       if_match: IfMatch = None) -> CommandMeta:
    """For commands on an existing stream: `creation_meta` and If-Match, in one dependency (FastAPI's cost per
    request grows with each)."""
    return CommandMeta(correlation_id=obs.correlation_id.get() or "",
                       traceparent=request.scope.get("state", {}).get("traceparent"), idempotency_key=idempotency_key,
                       expected_version=_if_match(if_match))


async def command_handler(request: Request) -> CommandHandler:
    return request.app.state.commands


async def queries(request: Request) -> Any:
    return request.app.state.queries


Meta = Annotated[CommandMeta, Depends(command_meta)]
CreationMeta = Annotated[CommandMeta, Depends(creation_meta)]
Commands = Annotated[CommandHandler, Depends(command_handler)]


class CommandRouter(APIRouter):
    """An APIRouter whose command routes are one line each: `router.command("accept", AcceptRequest, AcceptBody,
    "Accept a request")` registers POST {item}/accept, building the command from the path id and the body's
    fields (same names), and admitting the roles the domain's rule for that command names."""

    def __init__(self, *, item_path: str, id_param: Any, accepted: type[BaseModel],
                 callers: Callable[[type], Sequence[Role]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.item_path = item_path  # e.g. "/requests/{request_id}"
        self.id_name = re.search(r"{(\w+)}", item_path).group(1)  # type: ignore[union-attr]
        self.id_param = id_param  # the Annotated path parameter type, e.g. with a pattern
        self.accepted_model = accepted
        self.callers = callers
        self.command_classes: list[type] = []

    def accepted(self, result: AppendResult, response: Response) -> BaseModel:
        response.headers["ETag"] = f'"{result.version}"'
        return self.accepted_model(**{self.id_name: result.stream_id}, version=result.version,
                                   position=result.position, event_ids=list(result.event_ids),
                                   replayed=result.replayed)

    def command(self, path: str, command_cls: type, body: type[BaseModel] | None, summary: str,
                description: str | None = None) -> None:
        _check_body_fits(command_cls, body, self.id_name)
        roles = tuple(self.callers(command_cls))
        generated = tuple(getattr(command_cls, "generated_ids", ()))
        doc = (f"{description or summary}. Callers: {', '.join(r.value for r in roles)}. "
               "Send If-Match to act only on the version you saw.")

        async def endpoint(**kw: Any) -> BaseModel:
            stream_id, payload = kw[self.id_name], kw.get("body")
            fields = {name: getattr(payload, name) for name in type(payload).model_fields} if payload else {}
            for name in generated:
                if fields.get(name) is None:
                    fields[name] = new_id()
            command = command_cls(**{self.id_name: stream_id}, **fields)
            meta = kw["meta"]
            if meta.idempotency_key:  # only a repeat under the same key compares fingerprints
                meta = replace(meta, fingerprint=[stream_id, payload.model_dump(mode="json") if payload else None])
            result = await kw["request"].app.state.commands.execute(command, kw["actor"], meta)
            return self.accepted(result, kw["response"])

        params = [inspect.Parameter(self.id_name, inspect.Parameter.KEYWORD_ONLY, annotation=self.id_param)]
        if body is not None:
            params.append(inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=body))
        params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation) for name, annotation in (
            ("response", Response), ("request", Request), ("meta", Meta),  # the handler from the request: no dependency
            ("actor", Annotated[Actor, Depends(require(*roles))]))]
        endpoint.__signature__ = inspect.Signature(params, return_annotation=self.accepted_model)  # type: ignore[attr-defined]
        endpoint.__name__ = re.sub(r"\W", "_", path)
        # Read when the input is refused: visibility and If-Match are judged first (opsat.common.errors).
        endpoint.command_cls, endpoint.id_name = command_cls, self.id_name  # type: ignore[attr-defined]
        self.add_api_route(f"{self.item_path}/{path}", endpoint, methods=["POST"], summary=summary, description=doc,
                           response_model=self.accepted_model)
        self.command_classes.append(command_cls)


def _check_body_fits(command_cls: type, body: type[BaseModel] | None, id_name: str) -> None:
    """At start-up, not at the first request: the body's fields must be the command's, and cover what it needs."""
    if not dataclasses.is_dataclass(command_cls):
        raise TypeError(f"{command_cls.__name__} must be a dataclass to be routed")
    fields = {f.name: f for f in dataclasses.fields(command_cls)}
    given = set(body.model_fields) if body is not None else set()
    unknown = given - set(fields)
    if unknown:
        raise TypeError(f"body {body.__name__} has fields {sorted(unknown)} that {command_cls.__name__} lacks")  # type: ignore[union-attr]
    provided = given | {id_name} | set(getattr(command_cls, "generated_ids", ()))
    missing = [name for name, f in fields.items() if name not in provided
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise TypeError(f"{command_cls.__name__} needs {missing}, which no body field or path gives")

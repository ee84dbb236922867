"""Time-driven work: a `deadlines` table polled with FOR UPDATE SKIP LOCKED.

A due row becomes a command (e.g. auto-close a request); a round's rows of one kind are decided
together and written in the transaction that retires them (`CommandDeadline`). Replicas share the rows
without double work; a crash mid-way leaves the row in place for the next poll. A command the domain now refuses
(the request was closed meanwhile) simply retires the deadline.

One clock: "is it due?" is asked with the worker's clock, the same one its commands see, never with
PostgreSQL's `now()`. Two clocks a little apart would select a row that the domain then refuses as
early. Should the domain still say `NotDueYet` (another replica's clock, a moved due time), the row
is kept and moved to the time the domain names, never deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from opsat.common import observability as obs
from opsat.common.commands import CommandHandler, CommandMeta
from opsat.common.domain import SYSTEM_ACTOR, DomainError, NotDueYet

log = logging.getLogger(__name__)

DeadlineHandler = Callable[[str, dict[str, Any]], Awaitable[None]]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


# A deadline set again to what it already is stays untouched (no new row version, no index entries): clocks set
# their check deadline on every event, most often to the time it already has.
_MOVE = ("due_at = excluded.due_at, payload = excluded.payload, attempts = 0, last_error = null"
         " where (deadlines.due_at, deadlines.payload, deadlines.attempts, deadlines.last_error)"
         " is distinct from (excluded.due_at, excluded.payload, 0, null)")


async def schedule(conn: AsyncConnection, kind: str, stream_id: str, due_at: datetime,
                   payload: dict[str, Any] | None = None) -> None:
    """Set (or move) the one deadline of `kind` for a stream."""
    await conn.execute(
        text(
            "insert into deadlines (kind, stream_id, due_at, payload) values (:k, :s, :d, cast(:p as jsonb))"
            f" on conflict (kind, stream_id) do update set {_MOVE}"
        ),
        {"k": kind, "s": stream_id, "d": due_at, "p": json.dumps(payload or {})},
    )


async def schedule_many(conn: AsyncConnection, kind: str, due: Sequence[tuple[str, datetime, dict[str, Any]]]) -> None:
    """`schedule` for several streams (each once) in one statement."""
    if due:
        await conn.execute(
            text("insert into deadlines (kind, stream_id, due_at, payload)"
                 " select :k, s, d, p from unnest(cast(:s as text[]), cast(:d as timestamptz[]), cast(:p as jsonb[]))"
                 " as t(s, d, p)"
                 f" on conflict (kind, stream_id) do update set {_MOVE}"),
            {"k": kind, "s": [s for s, _, _ in due], "d": [d for _, d, _ in due],
             "p": [json.dumps(p) for _, _, p in due]})


async def cancel_many(conn: AsyncConnection, kind: str, stream_ids: Sequence[str]) -> None:
    if stream_ids:
        await conn.execute(text("delete from deadlines where kind = :k and stream_id = any(:s)"),
                           {"k": kind, "s": list(stream_ids)})


async def cancel(conn: AsyncConnection, kind: str, stream_id: str) -> None:
    await conn.execute(text("delete from deadlines where kind = :k and stream_id = :s"), {"k": kind, "s": stream_id})


class CommandDeadline:
    """A deadline kind whose due rows become commands (`cls(<id field>=stream_id, **payload)`). A round's rows
    are decided together and written in the scheduler's transaction (`fire_in`), so a row is retired in the same
    commit as its command's events; alone (`__call__`), each command has its own transaction."""

    def __init__(self, handler: CommandHandler, kind: str, command_cls: type) -> None:
        self.handler, self.kind, self.command_cls = handler, kind, command_cls
        self.id_field = handler.aggregate_for(command_cls).id_field

    def _command(self, stream_id: str, payload: dict[str, Any]) -> Any:
        return self.command_cls(**{self.id_field: stream_id}, **payload)

    def _meta(self, stream_id: str) -> CommandMeta:
        return CommandMeta(correlation_id=f"deadline:{self.kind}:{stream_id}")

    async def __call__(self, stream_id: str, payload: dict[str, Any]) -> None:
        await self.handler.execute(self._command(stream_id, payload), SYSTEM_ACTOR, self._meta(stream_id))

    async def fire_in(self, conn: AsyncConnection, due: list[tuple[str, dict[str, Any]]]) -> list[DomainError | None]:
        """Each row's refusal, or None where its command was decided (written by the time this returns)."""
        batch = self.handler.batch(conn)
        await batch.load([stream_id for stream_id, _ in due])
        outcomes = [await batch.execute(self._command(stream_id, payload), SYSTEM_ACTOR, self._meta(stream_id))
                    for stream_id, payload in due]
        await batch.commit()
        return [outcome if isinstance(outcome, DomainError) else None for outcome in outcomes]


def _payload(row: Any) -> dict[str, Any]:
    return row.payload if isinstance(row.payload, dict) else json.loads(row.payload)


async def fire_due(engine: AsyncEngine, handlers: dict[str, DeadlineHandler], *, limit: int = 200,
                   now: Clock = utc_now) -> int:
    """Run the handlers of up to `limit` deadlines due by `now()`; returns how many were retired.

    `now` must be the clock the handlers' commands use (see the module docstring). A handler with `fire_in`
    (`CommandDeadline`) takes its kind's rows at once in this transaction; should that fail, they run one by one.
    """
    moment = now()
    retired = 0
    async with engine.begin() as conn:
        rows = (
            await conn.execute(
                text(
                    "select id, kind, stream_id, payload, attempts from deadlines"
                    " where due_at <= :now and kind = any(:kinds)"
                    " order by due_at limit :n for update skip locked"
                ),
                {"now": moment, "kinds": list(handlers), "n": limit},
            )
        ).all()
        by_kind: dict[str, list[Any]] = {}
        for row in rows:
            by_kind.setdefault(row.kind, []).append(row)
        for kind, due in by_kind.items():
            fire_in = getattr(handlers[kind], "fire_in", None)
            if fire_in is not None:
                try:
                    async with conn.begin_nested():
                        outcomes = await fire_in(conn, [(row.stream_id, _payload(row)) for row in due])
                except Exception:
                    log.info("deadlines %s: a round of %d failed together; firing them one by one", kind, len(due),
                             exc_info=True)
                else:
                    retired += await _settle_round(conn, due, outcomes)
                    continue
            for row in due:
                retired += await _fire_one(conn, handlers[kind], row, moment)
    return retired


async def _settle_round(conn: AsyncConnection, due: list[Any], outcomes: list[DomainError | None]) -> int:
    done = []
    for row, outcome in zip(due, outcomes, strict=True):
        if isinstance(outcome, NotDueYet):  # early by the domain's reckoning: wait for the time it names
            await conn.execute(text("update deadlines set due_at = :d where id = :id"),
                               {"d": outcome.due_at, "id": row.id})
            obs.DEADLINES_FIRED.labels(row.kind, "not_due").inc()
            continue
        if outcome is not None:
            log.info("deadline %s for %s refused: %s", row.kind, row.stream_id, outcome.detail)
        obs.DEADLINES_FIRED.labels(row.kind, "done" if outcome is None else "refused").inc()
        done.append(row.id)
    if done:
        await conn.execute(text("delete from deadlines where id = any(:ids)"), {"ids": done})
    return len(done)


async def _fire_one(conn: AsyncConnection, handler: DeadlineHandler, row: Any, moment: datetime) -> int:
    """One deadline's handler in its own transaction; 1 if the row was retired."""
    try:
        await handler(row.stream_id, _payload(row))
        outcome = "done"
    except NotDueYet as exc:  # early by the domain's reckoning: wait for the time it names
        await conn.execute(text("update deadlines set due_at = :d where id = :id"), {"d": exc.due_at, "id": row.id})
        log.info("deadline %s for %s not due yet, moved to %s", row.kind, row.stream_id, exc.due_at)
        obs.DEADLINES_FIRED.labels(row.kind, "not_due").inc()
        return 0
    except DomainError as exc:
        outcome = "refused"  # no longer applies: the aggregate moved on
        log.info("deadline %s for %s refused: %s", row.kind, row.stream_id, exc.detail)
    except Exception as exc:  # transient: try again later, with growing delay
        delay = timedelta(seconds=min(2 ** row.attempts, 600))
        await conn.execute(
            text("update deadlines set attempts = attempts + 1, last_error = :e, due_at = :d where id = :id"),
            {"e": f"{type(exc).__name__}: {exc}"[:2000], "d": moment + delay, "id": row.id},
        )
        obs.DEADLINES_FIRED.labels(row.kind, "retry").inc()
        return 0
    await conn.execute(text("delete from deadlines where id = :id"), {"id": row.id})
    obs.DEADLINES_FIRED.labels(row.kind, outcome).inc()
    return 1


async def run_scheduler(engine: AsyncEngine, handlers: dict[str, DeadlineHandler], stop: asyncio.Event,
                        poll_interval_s: float = 1.0, *, clock: Clock = utc_now) -> None:
    """Fire what is due, then sleep until the next due row (at most `poll_interval_s`: rows scheduled
    meanwhile by other transactions are seen by the next poll)."""
    while not stop.is_set():
        pause = poll_interval_s
        try:
            while await fire_due(engine, handlers, now=clock):
                pass
            pause = await _until_next(engine, handlers, clock, poll_interval_s)
        except Exception:  # database away: keep polling
            log.warning("deadline scheduler round failed", exc_info=True)
        try:
            await asyncio.wait_for(stop.wait(), timeout=pause)
        except TimeoutError:
            pass


async def _until_next(engine: AsyncEngine, handlers: dict[str, DeadlineHandler], clock: Clock,
                      longest: float) -> float:
    async with engine.connect() as conn:
        nearest = (await conn.execute(text("select min(due_at) from deadlines where kind = any(:kinds)"),
                                      {"kinds": list(handlers)})).scalar()
    if nearest is None:
        return longest
    return min(longest, max((nearest - clock()).total_seconds(), 0.05))  # a row another replica holds: not a spin

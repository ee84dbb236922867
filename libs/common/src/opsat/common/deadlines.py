"""Time-driven work: a `deadlines` table polled with FOR UPDATE SKIP LOCKED.

A due row becomes a command (e.g. auto-close a request). Replicas share the rows without double
work; a crash mid-way leaves the row in place for the next poll. A command the domain now refuses
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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from opsat.common import observability as obs
from opsat.common.domain import DomainError, NotDueYet

log = logging.getLogger(__name__)

DeadlineHandler = Callable[[str, dict[str, Any]], Awaitable[None]]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


async def schedule(conn: AsyncConnection, kind: str, stream_id: str, due_at: datetime,
                   payload: dict[str, Any] | None = None) -> None:
    """Set (or move) the one deadline of `kind` for a stream."""
    await conn.execute(
        text(
            "insert into deadlines (kind, stream_id, due_at, payload) values (:k, :s, :d, cast(:p as jsonb))"
            " on conflict (kind, stream_id) do update set due_at = excluded.due_at, payload = excluded.payload,"
            " attempts = 0, last_error = null"
        ),
        {"k": kind, "s": stream_id, "d": due_at, "p": json.dumps(payload or {})},
    )


async def cancel(conn: AsyncConnection, kind: str, stream_id: str) -> None:
    await conn.execute(text("delete from deadlines where kind = :k and stream_id = :s"), {"k": kind, "s": stream_id})


async def fire_due(engine: AsyncEngine, handlers: dict[str, DeadlineHandler], *, limit: int = 50,
                   now: Clock = utc_now) -> int:
    """Run the handlers of up to `limit` deadlines due by `now()`; returns how many were retired.

    `now` must be the clock the handlers' commands use (see the module docstring).
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
        for row in rows:
            try:
                await handlers[row.kind](row.stream_id, row.payload if isinstance(row.payload, dict)
                                         else json.loads(row.payload))
                outcome = "done"
            except NotDueYet as exc:  # early by the domain's reckoning: wait for the time it names
                await conn.execute(text("update deadlines set due_at = :d where id = :id"),
                                   {"d": exc.due_at, "id": row.id})
                log.info("deadline %s for %s not due yet, moved to %s", row.kind, row.stream_id, exc.due_at)
                obs.DEADLINES_FIRED.labels(row.kind, "not_due").inc()
                continue
            except DomainError as exc:
                outcome = "refused"  # no longer applies: the aggregate moved on
                log.info("deadline %s for %s refused: %s", row.kind, row.stream_id, exc.detail)
            except Exception as exc:  # transient: try again later, with growing delay
                delay = timedelta(seconds=min(2 ** row.attempts, 600))
                await conn.execute(
                    text("update deadlines set attempts = attempts + 1, last_error = :e,"
                         " due_at = :d where id = :id"),
                    {"e": f"{type(exc).__name__}: {exc}"[:2000], "d": moment + delay, "id": row.id},
                )
                obs.DEADLINES_FIRED.labels(row.kind, "retry").inc()
                continue
            await conn.execute(text("delete from deadlines where id = :id"), {"id": row.id})
            obs.DEADLINES_FIRED.labels(row.kind, outcome).inc()
            retired += 1
    return retired


async def run_scheduler(engine: AsyncEngine, handlers: dict[str, DeadlineHandler], stop: asyncio.Event,
                        poll_interval_s: float = 1.0, *, clock: Clock = utc_now) -> None:
    while not stop.is_set():
        try:
            while await fire_due(engine, handlers, now=clock):
                pass
        except Exception:  # database away: keep polling
            log.warning("deadline scheduler round failed", exc_info=True)
        try:
            await asyncio.wait_for(stop.wait(), timeout=poll_interval_s)
        except TimeoutError:
            pass

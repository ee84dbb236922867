"""Read-your-writes waits woken by the projections, not by polling.

A projection runner NOTIFYs `READ_MODEL_CHANNEL` in the transaction of each batch it applies (delivered when
it commits). Each API process holds one LISTEN connection (`ReadModelWatch`); a request waiting for a
`min_version` reads the read model, and if it is not there yet sleeps until the next notification (or its
deadline), then reads again. The number of waits is bounded by `opsat.common.api.WaitLimiter`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from opsat.common import faults
from opsat.common.db import connect_raw

log = logging.getLogger(__name__)

READ_MODEL_CHANNEL = "opsat_read_model"
# While the LISTEN connection is down, a waiter reads again this often instead (rare: a database restart).
UNWATCHED_POLL_S = 0.25


class ReadModelWatch:
    """Counts read-model changes seen on one LISTEN connection; waiters wait for the count to move."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.generation = 0  # read before reading the read model; `wait_beyond` returns once it moved
        self.listening = False
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._outage = faults.Outage(log, "read-model LISTEN connection")

    def _notified(self, *_: object) -> None:
        self.generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_beyond(self, generation: int, timeout: float) -> None:
        """Return once a change after `generation` was seen, or after `timeout` seconds."""
        if timeout <= 0 or self.generation != generation:
            return
        changed = self._changed
        try:
            await asyncio.wait_for(changed.wait(), timeout if self.listening else min(timeout, UNWATCHED_POLL_S))
        except TimeoutError:
            pass

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="read-model-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _listen(self) -> None:
        backoff = faults.Backoff(0.5, 10.0)
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect_raw(self.database_url)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn: lost.set())
                await conn.add_listener(READ_MODEL_CHANNEL, self._notified)
                self.listening = True
                self._outage.healed()
                backoff.reset()
                self._notified()  # a change may have gone unheard while not listening
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._outage.failed(exc)
            finally:
                self.listening = False
                if conn is not None and not conn.is_closed():
                    await conn.close(timeout=2)
            await asyncio.sleep(backoff.next())


async def wait_until(reached: Callable[[], Awaitable[bool]], wait_s: float, watch: ReadModelWatch | None) -> bool:
    """Whether `reached()` holds, asking again after each read-model change for up to `wait_s` seconds."""
    deadline = asyncio.get_running_loop().time() + (wait_s if watch is not None else 0.0)
    while True:
        seen = watch.generation if watch is not None else 0  # before reading: a later change wakes us
        if await reached():
            return True
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0 or watch is None:
            return False
        await watch.wait_beyond(seen, left)


async def stream_reached(engine: AsyncEngine, versions: Table, projection: str, source: str, stream_id: str,
                         version: int) -> bool:
    """Whether `projection` has applied `stream_id` (of `source`) up to `version` (its `stream_versions` row)."""
    t = versions
    async with engine.connect() as conn:
        applied = await conn.scalar(select(t.c.version).where(
            t.c.projection == projection, t.c.source == source, t.c.stream_id == stream_id))
    return applied is not None and applied >= version

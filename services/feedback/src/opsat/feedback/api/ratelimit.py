"""Fixed-window rate limits counted in PostgreSQL, so that every API replica counts against the same limit: the
public answer endpoints count calls per client address and per token (its hash).

One statement counts a call under all its keys (an upsert per key, in one order, so concurrent calls never
deadlock) and answers, per key, the calls in its current window and the seconds until that window ends. The
database's clock decides the windows: replicas whose clocks differ still agree. Windows long over are deleted
now and then by whichever replica comes by.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

limit_tables = MetaData()
rate_limits = Table(
    "rate_limits", limit_tables,
    Column("key", String, primary_key=True),  # "<what>:<value>", e.g. client:10.0.0.7 or token:<sha-256>
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("calls", Integer, nullable=False),
)

_HIT = text("""
insert into rate_limits as l (key, window_start, calls)
select k, now(), 1 from unnest(cast(:keys as text[])) with ordinality as u(k, n) order by n
on conflict (key) do update set
  window_start = case when l.window_start <= now() - make_interval(secs => :window) then now()
                      else l.window_start end,
  calls = case when l.window_start <= now() - make_interval(secs => :window) then 1 else l.calls + 1 end
returning key, calls, extract(epoch from l.window_start + make_interval(secs => :window) - now())
""")
_FORGET = text("delete from rate_limits where window_start <= now() - make_interval(secs => :window)")


@dataclass(frozen=True)
class Quota:
    key: str
    calls: int  # at most this many per window


class SharedRateLimiter:
    def __init__(self, engine: AsyncEngine, window_s: float) -> None:
        self.engine, self.window_s = engine, window_s
        self._forgot_at = time.monotonic()

    async def hit(self, limits: Sequence[Quota]) -> tuple[Quota, float] | None:
        """Count a call under every limit's key; None if all allow it, else the first limit exceeded and the
        seconds until its window ends."""
        keys = sorted({limit.key for limit in limits})
        async with self.engine.begin() as conn:
            rows = {key: (calls, float(wait)) for key, calls, wait in (await conn.execute(
                _HIT, {"keys": keys, "window": self.window_s})).all()}
        if time.monotonic() - self._forgot_at >= self.window_s:
            self._forgot_at = time.monotonic()
            async with self.engine.begin() as conn:
                await conn.execute(_FORGET, {"window": self.window_s})
        for limit in limits:
            calls, wait = rows[limit.key]
            if calls > limit.calls:
                return limit, max(wait, 0.0)
        return None


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))

"""A fixed-window rate limit per key, in the API process: the public answer endpoints count calls per client
address and per token (its hash). With N API replicas a client gets at most N times the limit; the per-token
limit still makes guessing hopeless (2^256 tokens)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.limit, self.window_s, self.clock, self.max_keys = limit, window_s, clock, max_keys
        self.windows: dict[str, tuple[float, int]] = {}  # key -> (window start, calls)

    def hit(self, key: str) -> float | None:
        """Count a call; None if allowed, else the seconds until the key may call again."""
        now = self.clock()
        start, calls = self.windows.get(key, (now, 0))
        if now - start >= self.window_s:
            start, calls = now, 0
        if calls >= self.limit:
            return max(start + self.window_s - now, 0.0)
        if len(self.windows) >= self.max_keys and key not in self.windows:
            self._forget_old(now)
        self.windows[key] = (start, calls + 1)
        return None

    def _forget_old(self, now: float) -> None:
        self.windows = {k: v for k, v in self.windows.items() if now - v[0] < self.window_s}


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))

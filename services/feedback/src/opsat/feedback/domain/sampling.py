"""The sampling rule of transactional surveys: never the same person more than once within the window
(default 7 days), and optionally only a share of closures (`rate`), drawn deterministically from the
closing event so that a replay decides the same."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class SamplingRule:
    window: timedelta = timedelta(days=7)
    rate: float = 1.0  # share of eligible closures surveyed, 0-1

    def __post_init__(self) -> None:
        if self.window < timedelta(0):
            raise ValueError("the sampling window cannot be negative")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("the sampling rate is 0-1")


def draw(seed: str) -> float:
    """A number in [0, 1) fixed by `seed` (the closing event's id)."""
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") / 2 ** 64


def should_survey(rule: SamplingRule, last_invited_at: datetime | None, now: datetime, seed: str) -> tuple[bool, str]:
    """Whether to survey this closure, and why (for logs and metrics)."""
    if last_invited_at is not None and now - last_invited_at < rule.window:
        return False, "surveyed_recently"
    if draw(seed) >= rule.rate:
        return False, "not_sampled"
    return True, "sampled"

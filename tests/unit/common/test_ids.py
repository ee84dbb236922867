"""`new_id`: a UUID version 7 from a pooled random source: canonical text, the time it was made, later than the one
before it (also when the clock steps back), never a repeat, not shared by a fork."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from opsat.common import ids
from opsat.common.ids import new_id


def _millis(text: str) -> int:
    return uuid.UUID(text).int >> 80


def test_ids_are_canonical_version_7_uuids_that_never_repeat():
    ids_ = [new_id() for _ in range(20_000)]  # several refills of the pool
    assert len(set(ids_)) == len(ids_)
    for text in ids_[:2_000]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_an_id_begins_with_the_millisecond_it_was_made_and_sorts_after_the_ones_before():
    before = time.time_ns() // 1_000_000
    made = [new_id() for _ in range(5_000)]
    after = time.time_ns() // 1_000_000
    assert made == sorted(made)  # as text, as PostgreSQL's indexes compare them
    assert before <= _millis(made[0]) <= _millis(made[-1]) <= after


def test_ids_keep_increasing_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch):
    first = new_id()
    real = time.time_ns()
    monkeypatch.setattr(ids.time, "time_ns", lambda: real - 3_600 * 10**9)  # an hour back
    later = [new_id() for _ in range(3)]
    assert [first, *later] == sorted({first, *later})  # strictly increasing
    assert _millis(later[-1]) == _millis(first)  # still the newest time seen, not the clock's


def test_a_forked_child_does_not_reuse_the_parents_pool():
    new_id()  # the pool holds unread bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids must come from a pool of its own
        os.write(write, ",".join(new_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 4096).decode().split(",")
    os.waitpid(pid, 0)
    parent = [new_id() for _ in range(3)]
    assert len(child) == 3 and not set(child) & set(parent)

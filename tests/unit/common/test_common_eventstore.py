"""eventstore pure parts: Idempotency.for_request hashing, fold, AppendResult.as_json."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, date, datetime

import pytest

from opsat.common.domain import Actor, Conflict, DomainEvent, InvalidInput
from opsat.common.errors import status_for
from opsat.common.eventstore import (
    AppendResult,
    ConcurrencyConflict,
    Idempotency,
    IdempotencyKeyReused,
    RecordedEvent,
    fold,
)

# --- Idempotency.for_request -------------------------------------------------------------


def test_the_same_request_hashes_the_same():
    a = Idempotency.for_request("k1", Actor("u1", "acme"), "SubmitRequest", {"title": "VPN", "impact": 2})
    b = Idempotency.for_request("k1", Actor("u1", "acme"), "SubmitRequest", {"title": "VPN", "impact": 2})
    assert a == b
    assert re.fullmatch(r"[0-9a-f]{64}", a.request_hash), a.request_hash  # a SHA-256 in hex


def test_key_and_actor_are_kept_but_not_hashed():
    a = Idempotency.for_request("k1", Actor("u1", "acme"), "SubmitRequest", {"title": "VPN"})
    b = Idempotency.for_request("k2", Actor("u2", "acme"), "SubmitRequest", {"title": "VPN"})
    assert (a.key, a.actor) == ("k1", "u1")
    assert a.request_hash == b.request_hash


def test_dict_key_order_does_not_matter():
    a = Idempotency.for_request("k", Actor("u", "acme"), {"a": 1, "b": {"x": 1, "y": 2}})
    b = Idempotency.for_request("k", Actor("u", "acme"), {"b": {"y": 2, "x": 1}, "a": 1})
    assert a.request_hash == b.request_hash


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("SubmitRequest", {"title": "VPN"}), ("SubmitRequest", {"title": "VPN down"})),
        (("SubmitRequest", {"title": "VPN"}), ("CloseRequest", {"title": "VPN"})),
        (("SubmitRequest", {"impact": 1}), ("SubmitRequest", {"impact": "1"})),
        (("a", "b"), ("b", "a")),  # the order of parts matters
        (("a",), ("a", None)),
        (({"x": None},), ({},)),
    ],
)
def test_a_different_request_hashes_differently(left: tuple, right: tuple):
    caller = Actor("u", "acme")
    assert Idempotency.for_request("k", caller, *left).request_hash != Idempotency.for_request("k", caller, *right).request_hash


def test_non_json_values_hash_by_their_string():
    at = datetime(2026, 1, 5, 9, tzinfo=UTC)
    a = Idempotency.for_request("k", Actor("u", "acme"), {"at": at, "day": date(2026, 1, 5)})
    b = Idempotency.for_request("k", Actor("u", "acme"), {"at": at, "day": date(2026, 1, 5)})
    c = Idempotency.for_request("k", Actor("u", "acme"), {"at": at.replace(hour=10), "day": date(2026, 1, 5)})
    assert a.request_hash == b.request_hash != c.request_hash


def test_hash_is_stable_across_processes():
    # sha256 of the canonical JSON: a restarted or second API replica must compute the same value.
    expected = hashlib.sha256(json.dumps(["SubmitRequest", {"a": 1}], sort_keys=True).encode()).hexdigest()
    assert Idempotency.for_request("k", Actor("u", "acme"), "SubmitRequest", {"a": 1}).request_hash == expected


# --- fold --------------------------------------------------------------------------------


class Added(DomainEvent):
    event_type = "opsat.test.added"
    amount: int


def recorded(version: int, event: DomainEvent) -> RecordedEvent:
    return RecordedEvent(position=100 + version, stream_id="s1", stream_type="counter", version=version,
                         event_id=f"e{version}", event=event, metadata={}, recorded_at=datetime(2026, 1, 1))


def evolve(state: list[int] | None, event: DomainEvent) -> list[int]:
    assert isinstance(event, Added)
    return [*(state or []), event.amount]


def test_fold_of_no_events_is_none():
    assert fold(evolve, []) is None


def test_fold_applies_events_in_order_starting_from_none():
    seen: list = []

    def spy(state, event):
        seen.append(state)
        return evolve(state, event)

    state = fold(spy, [recorded(1, Added(amount=3)), recorded(2, Added(amount=4)), recorded(3, Added(amount=5))])
    assert state == [3, 4, 5]
    assert seen == [None, [3], [3, 4]]


def test_fold_passes_the_domain_event_not_the_record():
    got = []
    fold(lambda s, e: got.append(e), [recorded(1, Added(amount=1))])
    assert got == [Added(amount=1)]


# --- AppendResult / errors ---------------------------------------------------------------


def test_append_result_as_json_is_json_serialisable():
    result = AppendResult("s1", 3, 42, ("e1", "e2"))
    data = result.as_json()
    assert data == {"stream_id": "s1", "version": 3, "position": 42, "event_ids": ["e1", "e2"], "replayed": False}
    assert AppendResult(**{**json.loads(json.dumps(data)), "event_ids": tuple(data["event_ids"])}) == result


def test_store_errors_map_to_http_statuses():
    assert isinstance(ConcurrencyConflict("x"), Conflict)
    assert status_for(ConcurrencyConflict("x", code="version_conflict")) == 409
    assert isinstance(IdempotencyKeyReused("x"), InvalidInput)
    assert status_for(IdempotencyKeyReused("x", field="Idempotency-Key")) == 422

"""faults.classify: one table of what heals by itself (retry, 503) and what never will (park, 4xx/500)."""

from __future__ import annotations

import errno
import logging
import random

import asyncpg
import pytest
from aiokafka import errors as kafka_errors
from pydantic import BaseModel, ValidationError
from sqlalchemy import exc as sa_exc

from opsat.common.consumer import UndecodableRecord
from opsat.common.faults import Backoff, Fault, Outage, classify, is_transient
from opsat.common.observability import RateLimit


def _wrapped(orig: BaseException) -> sa_exc.DBAPIError:
    """As SQLAlchemy raises a driver error: a DBAPIError whose `orig` is the driver's exception."""
    return sa_exc.DBAPIError("insert into t values (1)", {}, orig)


def _chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


class _Model(BaseModel):
    n: int


def _validation_error() -> ValidationError:
    try:
        _Model(n="x")  # type: ignore[arg-type]
    except ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


TRANSIENT = {
    "connection refused": ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"),
    "connection reset": ConnectionResetError(errno.ECONNRESET, "reset by peer"),
    "connect timeout": TimeoutError(),
    "host unreachable": OSError(errno.EHOSTUNREACH, "No route to host"),
    "raw asyncpg, connection closed": asyncpg.InterfaceError("connection is closed"),
    "asyncpg connection lost": asyncpg.ConnectionDoesNotExistError("connection was closed in the middle"),
    "serialization failure": asyncpg.SerializationError("could not serialize access"),
    "deadlock": asyncpg.DeadlockDetectedError("deadlock detected"),
    "lock timeout": asyncpg.LockNotAvailableError("canceling statement due to lock timeout"),
    "admin shutdown": asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    "starting up": asyncpg.CannotConnectNowError("the database system is starting up"),
    "too many connections": asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    "wrapped by SQLAlchemy": _wrapped(asyncpg.SerializationError("could not serialize access")),
    "pool timeout": sa_exc.TimeoutError("QueuePool limit of size 5 overflow 0 reached"),
    "transaction died with its connection": sa_exc.PendingRollbackError("Can't reconnect until invalid transaction"),
    "statement cached before a column's type changed": _wrapped(asyncpg.InvalidCachedStatementError(
        "cached statement plan is invalid due to a database schema or configuration change")),
    "a cause deep in the chain": _chained(RuntimeError("apply failed"), ConnectionRefusedError(111, "refused")),
    "in an exception group": ExceptionGroup("task group", [ConnectionResetError(104, "reset")]),
    "Kafka unreachable": kafka_errors.KafkaConnectionError("Unable to bootstrap from 127.0.0.1:9092"),
    "Kafka request timed out": kafka_errors.RequestTimedOutError(),
    "Kafka node not ready": kafka_errors.NodeNotReadyError(),
    "Kafka coordinator moving": kafka_errors.NotCoordinatorForGroupError(),
    "Kafka delivery timeout": kafka_errors.KafkaTimeoutError(),
}

POISON = {
    "undecodable record": UndecodableRecord("JSONDecodeError: Expecting value"),
    "schema-invalid": _validation_error(),
    "unique violation": asyncpg.UniqueViolationError("duplicate key value"),
    "not null violation": _wrapped(asyncpg.NotNullViolationError("null value in column")),
    "bad value": asyncpg.InvalidTextRepresentationError("invalid input syntax for type integer"),
    "NUL in text": asyncpg.UntranslatableCharacterError("unsupported Unicode escape sequence"),
    "asyncpg rejects an argument": asyncpg.DataError("invalid input for query argument $1"),
    "wrong number of arguments": asyncpg.InterfaceError("the server expects 2 arguments for this query, 1 was passed"),
    "undefined column (a bug)": asyncpg.UndefinedColumnError("column \"x\" does not exist"),
    "handler bug": KeyError("request_id"),
    "file missing": FileNotFoundError(errno.ENOENT, "No such file"),
    "Kafka message too large": kafka_errors.MessageSizeTooLargeError(),
    "poison before a transient context": _chained(UndecodableRecord("bad"), ConnectionResetError(104, "reset")),
}


@pytest.mark.parametrize("exc", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_transient(exc: BaseException) -> None:
    assert classify(exc) is Fault.TRANSIENT
    assert is_transient(exc)


@pytest.mark.parametrize("exc", POISON.values(), ids=POISON.keys())
def test_poison(exc: BaseException) -> None:
    assert classify(exc) is Fault.POISON


def test_a_chain_that_loops_back_on_itself_ends() -> None:
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__context__, b.__context__ = b, a
    assert classify(a) is Fault.POISON


def test_backoff_grows_to_its_ceiling_with_jitter_and_resets() -> None:
    backoff = Backoff(initial=0.2, maximum=2.0, rng=random.Random(7))
    delays = [backoff.next() for _ in range(8)]
    ceilings = [min(2.0, 0.2 * 2**i) for i in range(8)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings))
    assert delays[-1] >= 1.0
    backoff.reset()
    assert backoff.next() <= 0.2


def test_an_outage_warns_once_and_reports_its_duration(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    outage = Outage(logging.getLogger("t.outage"), "relay to Kafka", clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="t.outage")
    assert outage.healed() is None  # nothing to heal
    assert outage.failed(ConnectionRefusedError(111, "refused")) is True
    for _ in range(50):
        now[0] += 1
        assert outage.failed(ConnectionRefusedError(111, "refused")) is False
    assert outage.healed() == 50.0
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [lvl for lvl, _ in levels] == [logging.WARNING, logging.INFO]
    assert "ConnectionRefusedError" in levels[0][1] and "50.0s" in levels[1][1] and "51 failed" in levels[1][1]


def test_rate_limit_lets_one_alike_record_through_per_interval_and_counts_the_rest() -> None:
    now = [0.0]
    limit = RateLimit(("aiokafka",), interval=30, clock=lambda: now[0])

    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, (), None)

    assert limit.filter(record("aiokafka.client", "Unable connect to node with id %s"))
    assert not any(limit.filter(record("aiokafka.client", "Unable connect to node with id %s")) for _ in range(99))
    assert limit.filter(record("aiokafka.client", "Unable to update metadata from %s"))  # another template
    assert limit.filter(record("opsat.common.outbox", "x")) and limit.filter(record("opsat.common.outbox", "x"))
    now[0] = 31
    passed = record("aiokafka.client", "Unable connect to node with id %s")
    assert limit.filter(passed)
    assert "99 alike suppressed" in passed.msg

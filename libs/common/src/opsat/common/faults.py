"""Which failures are transient and which are poison, decided once for every service.

Transient: the world is briefly away (connection lost or refused, pool exhausted, serialization failure,
deadlock, lock timeout, database shutting down or recovering, Kafka unavailable). Retrying the same work
later succeeds, so consumers retry it with back-off and never park it, and the API answers 503 with
Retry-After. Poison: the work itself is wrong (cannot decode, schema-invalid, a value or constraint the
data breaks, a bug in a handler); retrying cannot help, so consumers park it and the API answers 4xx/500.
Anything not recognised as transient is poison: an unknown error must not stall a consumer forever.
"""

from __future__ import annotations

import enum
import errno
import logging
import random
import socket
import time
from collections.abc import Callable, Iterator

import asyncpg
import pydantic
from aiokafka import errors as kafka_errors
from sqlalchemy import exc as sa_exc


class Fault(enum.Enum):
    TRANSIENT = "transient"
    POISON = "poison"


class Poison(Exception):
    """Base of errors that say "this input is wrong" whatever caused them (e.g. an undecodable record)."""


class Transient(Exception):
    """Base of errors that say "run it again" whatever caused them (e.g. a lost race between writers)."""


# SQLSTATE classes and codes that say "try again", not "this is wrong".
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57P", "58")  # connection, resources, shutdown/recovery, system I/O
_TRANSIENT_SQLSTATES = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available (lock_timeout)
    "57014",  # query_canceled (statement_timeout)
    "25P03",  # idle_in_transaction_session_timeout
}
_POISON_SQLSTATE_CLASSES = ("22", "23")  # data exception, integrity constraint violation
# asyncpg.InterfaceError covers both a lost connection and a programming mistake; only the former heals.
_LOST_CONNECTION_WORDS = ("connection is closed", "connection was closed", "connection has been released",
                          "another operation is in progress", "pool is closing", "terminat", "timeout")
_NETWORK_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL, errno.ETIMEDOUT}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what SQLAlchemy wrapped (`orig`), and its causes and contexts, each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nxt in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)


def _sqlstate(exc: BaseException) -> str | None:
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return code if isinstance(code, str) and len(code) == 5 else None


def _one(exc: BaseException) -> Fault | None:
    """A verdict on one link of the chain, or None when this link says nothing."""
    if isinstance(exc, (Poison, pydantic.ValidationError)):
        return Fault.POISON
    if isinstance(exc, Transient):
        return Fault.TRANSIENT
    if isinstance(exc, asyncpg.InvalidCachedStatementError):
        # A statement prepared before a table's columns changed type (a read model swapped in with a new column
        # type): SQLAlchemy drops the connection's statement cache on it, so the same work succeeds when run again.
        return Fault.TRANSIENT
    code = _sqlstate(exc)
    if code is not None:
        if code in _TRANSIENT_SQLSTATES or code.startswith(_TRANSIENT_SQLSTATE_CLASSES):
            return Fault.TRANSIENT
        if code.startswith(_POISON_SQLSTATE_CLASSES):
            return Fault.POISON
    if isinstance(exc, asyncpg.PostgresConnectionError):
        return Fault.TRANSIENT
    if isinstance(exc, asyncpg.InterfaceError):
        if isinstance(exc, ValueError):  # asyncpg.DataError, ClientConfigurationError: our input is wrong
            return Fault.POISON
        message = str(exc).lower()
        return Fault.TRANSIENT if any(w in message for w in _LOST_CONNECTION_WORDS) else None
    if isinstance(exc, (sa_exc.TimeoutError, sa_exc.DisconnectionError)):  # pool exhausted, connection dropped
        return Fault.TRANSIENT
    if isinstance(exc, sa_exc.PendingRollbackError):  # the transaction died with its connection: redo it all
        return Fault.TRANSIENT
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return Fault.TRANSIENT
    if isinstance(exc, kafka_errors.KafkaError):
        if isinstance(exc, (kafka_errors.KafkaConnectionError, kafka_errors.KafkaTimeoutError,
                            kafka_errors.NodeNotReadyError, kafka_errors.RequestTimedOutError,
                            kafka_errors.NoBrokersAvailable)):
            return Fault.TRANSIENT
        return Fault.TRANSIENT if getattr(exc, "retriable", False) else None
    if isinstance(exc, (ConnectionError, TimeoutError)):  # refused, reset, broken pipe; connect timeouts
        return Fault.TRANSIENT
    if isinstance(exc, socket.gaierror) or (isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS):
        return Fault.TRANSIENT  # name lookup or route briefly failing (a file error is no such thing)
    return None


def classify(exc: BaseException) -> Fault:
    """TRANSIENT if any link of the exception's chain says so before one says POISON; else POISON."""
    for link in _chain(exc):
        verdict = _one(link)
        if verdict is not None:
            return verdict
    return Fault.POISON


def is_transient(exc: BaseException) -> bool:
    return classify(exc) is Fault.TRANSIENT


class Backoff:
    """Exponential back-off with full jitter (replicas retrying together must not retry in step)."""

    def __init__(self, initial: float = 0.2, maximum: float = 10.0, factor: float = 2.0,
                 rng: random.Random | None = None) -> None:
        self.initial, self.maximum, self.factor = initial, maximum, factor
        self.attempts = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        ceiling = min(self.maximum, self.initial * self.factor ** self.attempts)
        self.attempts += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempts = 0


class Outage:
    """The state of one dependency as a loop sees it: a warning when it starts failing, an info line with
    the duration when it works again, nothing in between (the metrics carry the detail)."""

    def __init__(self, logger: logging.Logger, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.log, self.what, self.clock = logger, what, clock
        self.since: float | None = None
        self.failures = 0

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> bool:
        """Count a failure; returns True (and warns) only for the first of an outage."""
        self.failures += 1
        if self.since is not None:
            return False
        self.since = self.clock()
        self.log.warning("%s: %s (%s); retrying until it heals", self.what, type(exc).__name__,
                         str(exc)[:300] or "no detail")
        return True

    def healed(self) -> float | None:
        """Mark success; returns the outage's duration if one just ended."""
        if self.since is None:
            return None
        duration = self.clock() - self.since
        self.log.info("%s: healed after %.1fs (%d failed attempts)", self.what, duration, self.failures)
        self.since, self.failures = None, 0
        return duration

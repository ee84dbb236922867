"""Outbox relay: events not yet acknowledged by Kafka -> Kafka -> removed from the outbox.

Works from "what is still in the outbox", never from "positions above the last one seen", so an
event whose transaction commits late (identity positions commit out of order) is still published.
One relay per database is active at a time (PostgreSQL advisory lock); the others wait as hot
standbys. Delivery is at least once; consumers drop duplicates by event id.

While Kafka is away the leader keeps its lock and its database connection and says so once: a warning,
`opsat_kafka_unreachable` = 1, and `opsat_outbox_backlog` refreshed on every retry. A delivery that has
not been acknowledged within `delivery_timeout_s` is given up and sent again by a fresh producer (the
idempotent producer never expires a batch by itself, so it would otherwise wait silently for as long as
the outage lasts). Order per stream holds: both producers send in position order, so the first copy of
each event on a partition is in stream order, and later copies are duplicates consumers drop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError
from opentelemetry.trace import SpanKind

from opsat.common import faults, tracing
from opsat.common import observability as obs
from opsat.common.collector import fewer_collections
from opsat.common.db import OUTBOX_CHANNEL, connect_raw
from opsat.common.envelope import encode, to_cloudevent
from opsat.common.kafka import partitions_for

log = logging.getLogger(__name__)

# The outbox's first rows, then each one's event by key (a lateral lookup the planner cannot turn into a join): a
# join let it merge the outbox with the events from the store's first position on, reading every event relayed
# before (64,000 rows for 2,000 with a backlog 60,000 down), or hash the whole store; the drain's PostgreSQL time per
# event grew with what had been relayed.
_PENDING = """
    select e.*
    from (select position from outbox
          where position not in (select unnest($2::bigint[]))  -- hashed: <> all() compares every pair
          order by position limit $1) o
    cross join lateral (
        select position, stream_id, stream_type, version, event_id::text as event_id, event_type, schema_version,
               data::text as data, metadata::text as metadata, recorded_at
        from events where position = o.position limit 1) e
    order by o.position
"""
# The acknowledged positions leave the outbox by key between their lowest and highest ($4, $5: with `= any()` alone
# the planner scanned the whole outbox for them, each time). $3 does it in the statement that reads the next rows (one
# round trip, run while the relay builds); the read sees the outbox as it was before the delete, so $2 lists them too.
_SETTLE_AND_PENDING = ("with settled as (delete from outbox where position = any($3::bigint[])"
                       " and position between $4 and $5)" + _PENDING)
_DELETE = "delete from outbox where position = any($1::bigint[]) and position between $2 and $3"

_CONTENT_TYPE = ("content-type", b"application/cloudevents+json")


def new_producer(bootstrap: str, *, request_timeout_ms: int = 10_000) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,  # broker drops retried duplicates and keeps per-partition order
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=request_timeout_ms,
    )


@dataclass
class RelayConfig:
    database_url: str
    bootstrap: str
    topic: str
    source: str
    batch_size: int = 2_000
    poll_interval_s: float = 1.0
    request_timeout_ms: int = 10_000
    delivery_timeout_s: float = 15.0  # unacknowledged this long: give up the producer, send again
    # Woken by a commit, wait this long before reading the outbox, so that the commits of the next moments go out
    # in the same produce request: at a few hundred commits a second a produce request each was the broker's
    # largest cost (about 1.5 ms of its CPU per request on the 2-core development machine), and every consumer
    # downstream ran one transaction per record. Only a relay woken from idle waits.
    linger_s: float = 0.005


def lock_key(topic: str) -> int:
    """A stable advisory-lock key per topic (so two services sharing a database don't block each other)."""
    return int.from_bytes(topic.encode()[:8].ljust(8, b"\0"), "big", signed=True) ^ 0x6F707361


class OutboxRelay:
    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self._producer: AIOKafkaProducer | None = None
        self._wakeup = asyncio.Event()
        self.published = 0
        self.is_leader = False
        self.kafka = faults.Outage(log, f"outbox relay to Kafka ({config.topic})")
        self.database = faults.Outage(log, f"outbox relay's database ({config.topic})")

    # --- one batch ----------------------------------------------------------------------
    async def publish_batch(self, conn: asyncpg.Connection) -> int:
        """Publish up to batch_size pending events in position order; returns how many left the outbox."""
        rows = await conn.fetch(_PENDING, self.config.batch_size, [])
        if not rows:
            return 0
        return await self._settle(conn, rows, await self._send(rows))

    async def _send(self, rows: list[asyncpg.Record]) -> list[asyncio.Future[Any]]:
        """Queue the rows on the producer, one record batch per partition (several if one overflows
        `max_batch_size`), each partition's records in position order; returns one future per row for the longest
        prefix of rows whose batches were queued (a broker error stops the queuing).

        Batches built here skip the producer's per-record path (its partitioner, serializers and one future per
        record), which bounded catch-up. The partition is the producer's own choice for key = stream id (murmur2, as
        `kafka.partitions_for` checks), so placement and per-stream order are what `send` gives; the idempotent
        producer stamps each batch with its sequence numbers when it drains it, as it does its own."""
        producer = await self._ensure_producer()
        topic = self.config.topic
        spans: list[Any] | None = [] if tracing.active() else None  # one producer span per event, when tracing
        slots: list[tuple[int, int]] = []  # per row: (partition, index of its builder)
        queued: dict[tuple[int, int], asyncio.Future[Any]] = {}
        try:
            batches = self._build(producer, sorted(await producer.partitions_for(topic)), rows, slots, spans)
            # Round by round (every partition's first builder, then the seconds...): a partition holds one undrained
            # batch at a time, so its next one waits for the sender, and meanwhile the other partitions go out.
            for index in range(max(len(b) for b in batches.values())):
                for partition, builders in batches.items():
                    if index < len(builders):
                        builders[index].close()  # sent as it is, without lingering for more
                        future = await producer.send_batch(builders[index], topic, partition=partition)
                        future.add_done_callback(_retrieved)
                        queued[(partition, index)] = future
        except KafkaError:
            pass  # whatever was queued is awaited by _settle, the rest waits for the next round
        futures: list[asyncio.Future[Any]] = []
        for slot in slots:
            future = queued.get(slot)
            if future is None:
                break  # keep order: rows after the first one not queued count as not sent
            futures.append(future)
        for n, span in enumerate(spans or ()):  # the producer span ends with the broker's acknowledgement
            if n < len(futures):
                futures[n].add_done_callback(lambda _, span=span: span.end())
            else:
                span.end()
        return futures

    def _build(self, producer: AIOKafkaProducer, partitions: list[int], rows: list[asyncpg.Record],
               slots: list[tuple[int, int]], spans: list[Any] | None) -> dict[int, list[Any]]:
        """The rows' records in builders per partition, in position order; `slots` gets each row's
        (partition, builder index)."""
        batches: dict[int, list[Any]] = {}
        messages = [self._message(row, spans) for row in rows]
        for message, partition in zip(messages, partitions_for([m["key"] for m in messages], partitions),
                                      strict=True):
            builders = batches.get(partition)
            if builders is None:
                builders = batches[partition] = [producer.create_batch()]
            if builders[-1].append(timestamp=None, **message) is None:  # full: the next builder of this partition
                builders[-1].close()
                builders.append(producer.create_batch())
                builders[-1].append(timestamp=None, **message)  # an empty builder takes any one record
            slots.append((partition, len(builders) - 1))
        return batches

    async def _settle(self, conn: asyncpg.Connection, rows: list[asyncpg.Record],
                      futures: list[asyncio.Future[Any]]) -> int:
        """Wait for the acknowledgements and delete what Kafka has from the outbox (see `_acknowledged`)."""
        return await self._delete(conn, await self._acknowledged(conn, rows, futures))

    async def _acknowledged(self, conn: asyncpg.Connection, rows: list[asyncpg.Record],
                            futures: list[asyncio.Future[Any]]) -> list[int]:
        """Wait for the acknowledgements; the positions Kafka has, always a prefix of the rows. On a failure, delete
        that prefix from the outbox, give up the producer (which also fails a later fetch already queued) and
        raise."""
        if futures:
            await asyncio.wait(futures, timeout=self.config.delivery_timeout_s)
        acked: list[int] = []
        failure: BaseException | None = None
        for row, fut in zip(rows, futures):
            if not fut.done():
                failure = KafkaTimeoutError(f"no acknowledgement within {self.config.delivery_timeout_s:.0f}s")
                break
            if fut.exception() is not None:
                failure = fut.exception()
                break  # keep order: nothing after the first failure counts as acknowledged
            acked.append(row["position"])
        if failure is not None or len(acked) < len(rows):
            await self._delete(conn, acked)
            await self._reset_producer()
            raise failure or KafkaError("send failed before every event of the batch was queued")
        return acked

    async def _delete(self, conn: asyncpg.Connection, positions: list[int]) -> int:
        if positions:
            await conn.execute(_DELETE, positions, min(positions), max(positions))
        return self._count_published(positions)

    def _count_published(self, positions: list[int]) -> int:
        if positions:
            self.published += len(positions)
            obs.EVENTS_PUBLISHED.labels(topic=self.config.topic).inc(len(positions))
        return len(positions)

    def _message(self, row: asyncpg.Record, spans: list[Any] | None = None) -> dict[str, Any]:
        metadata = orjson.loads(row["metadata"])
        ce_type = f"{row['event_type']}.v{row['schema_version']}"
        event_id = row["event_id"]
        stream_id = row["stream_id"]
        event = to_cloudevent(
            source=self.config.source,
            event_id=event_id,
            ce_type=ce_type,
            stream_id=stream_id,
            stream_type=row["stream_type"],
            version=row["version"],
            time=row["recorded_at"],
            data={},
            metadata=metadata,
        )
        del event["data"]
        # `data` goes in as the database's JSON text: not parsed and dumped again (most of an event's bytes).
        envelope = encode(event)
        headers = [("id", event_id.encode()), ("type", ce_type.encode()), _CONTENT_TYPE]
        traceparent = metadata.get("traceparent")
        if spans is not None:  # the consumer's span becomes a child of this one
            span = tracing.tracer().start_span(f"publish {self.config.topic}", kind=SpanKind.PRODUCER,
                                               context=tracing.context_from(traceparent),
                                               attributes={"messaging.destination.name": self.config.topic,
                                                           "messaging.message.id": event_id})
            spans.append(span)
            traceparent = tracing.traceparent_of(span)
        if traceparent:  # W3C trace context in the record's headers, as well as in the CloudEvent
            headers.append(("traceparent", traceparent.encode()))
        return {"key": stream_id.encode(), "value": b"".join((envelope[:-1], b',"data":', row["data"].encode(), b"}")),
                "headers": headers}

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = new_producer(self.config.bootstrap, request_timeout_ms=self.config.request_timeout_ms)
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _reset_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        # stop() flushes, and an idempotent producer's batches never expire: fail what it still holds (those
        # events are still in the outbox and go out again) so that stop() returns while Kafka is away.
        accumulator = getattr(producer, "_message_accumulator", None)
        if accumulator is not None:
            accumulator.fail_all(KafkaTimeoutError("producer replaced"))
        try:
            await asyncio.wait_for(producer.stop(), timeout=5)
        except Exception:  # a broken producer may fail to close; a fresh one replaces it anyway
            log.debug("producer stop failed", exc_info=True)

    async def close(self) -> None:
        """Close the Kafka producer (the loop in `run` does this itself when stopped)."""
        await self._reset_producer()

    async def drain(self, conn: asyncpg.Connection) -> int:
        """Publish until the outbox is empty. Three fetches overlap: one in flight (Kafka acknowledging it), one
        being built and queued, and the next being read by PostgreSQL meanwhile (in the statement that deletes
        the rows acknowledged before). Each is read from the outbox's head, leaving out only the fetches not yet
        settled, so an event that committed late below them goes out before any later event of its stream (which
        commits after it)."""
        with fewer_collections():  # (see opsat.common.collector: a young pass per 700 of its many short-lived objects)
            return await self._drain(conn)

    async def _drain(self, conn: asyncpg.Connection) -> int:
        total = 0
        in_flight: tuple[list[asyncpg.Record], list[asyncio.Future[Any]]] | None = None
        acked: list[int] = []  # acknowledged, to leave the outbox with the next read
        rows = await conn.fetch(_PENDING, self.config.batch_size, [])
        while rows:
            unsettled = [r["position"] for r in rows] + acked
            if in_flight is not None:
                unsettled += [r["position"] for r in in_flight[0]]
            ahead = asyncio.ensure_future(conn.fetch(_SETTLE_AND_PENDING, self.config.batch_size, unsettled, acked,
                                                     min(acked, default=0), max(acked, default=0)))
            await asyncio.sleep(0)  # the statement is on its way before the (CPU-bound) build starts
            try:
                sent = await self._send(rows)
            except BaseException:
                await asyncio.wait({ahead})  # the connection is free again
                if not ahead.cancelled() and ahead.exception() is None:
                    total += self._count_published(acked)
                if in_flight is not None:  # settle what is in flight, then report this failure
                    total += await self._settle(conn, *in_flight)
                raise
            following = await ahead
            total += self._count_published(acked)
            acked = await self._acknowledged(conn, *in_flight) if in_flight is not None else []
            in_flight, rows = (rows, sent), following
        total += await self._delete(conn, acked)
        if in_flight is not None:
            total += await self._settle(conn, *in_flight)
        return total

    # --- the long-running loop ------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        backoff = faults.Backoff(0.5, 10.0)
        while not stop.is_set():
            try:
                await self._lead(stop)
                backoff.reset()
            except Exception as exc:  # database away (or a broker error outside a drain): back off, lead again
                if not faults.is_transient(exc):
                    log.exception("outbox relay: unexpected failure; retrying")
                elif _kafka_fault(exc):
                    self.kafka.failed(exc)
                else:
                    self.database.failed(exc)
                obs.RELAY_ERRORS.labels(topic=self.config.topic).inc()
                await _sleep_or_stop(stop, backoff.next())
        await self.close()

    async def _lead(self, stop: asyncio.Event) -> None:
        conn = await connect_raw(self.config.database_url)
        self.database.healed()
        try:
            while not await conn.fetchval("select pg_try_advisory_lock($1)", lock_key(self.config.topic)):
                self.is_leader = False
                if await _sleep_or_stop(stop, self.config.poll_interval_s):
                    return
            self.is_leader = True
            await conn.add_listener(OUTBOX_CHANNEL, lambda *_: self._wakeup.set())
            backoff = faults.Backoff(0.5, 3.0)  # a retry is one connection attempt: cheap, and recovery is quicker
            backlog_counted = float("-inf")
            while not stop.is_set():
                self._wakeup.clear()
                try:
                    await self.drain(conn)
                except Exception as exc:
                    if not _kafka_fault(exc):
                        raise  # the database: reconnect and lead again
                    await self._kafka_unreachable(conn, exc)
                    await _sleep_or_stop(stop, backoff.next())
                    continue
                backoff.reset()
                if self.kafka.healed() is not None:
                    obs.KAFKA_UNREACHABLE.labels(topic=self.config.topic).set(0)
                if time.monotonic() - backlog_counted >= self.config.poll_interval_s:  # a count is a scan
                    obs.OUTBOX_BACKLOG.labels(topic=self.config.topic).set(
                        await conn.fetchval("select count(*) from outbox"))
                    backlog_counted = time.monotonic()
                # NOTIFY wakes us at once; the timeout is the fallback if a notification is lost.
                idle = not self._wakeup.is_set()  # (set: commits came during the drain, a batch is there already)
                waiter = asyncio.ensure_future(self._wakeup.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, stopper}, timeout=self.config.poll_interval_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                if idle and waiter.done() and not waiter.cancelled() and self.config.linger_s:
                    await _sleep_or_stop(stop, self.config.linger_s)
        finally:
            self.is_leader = False
            await conn.close(timeout=5)

    async def _kafka_unreachable(self, conn: asyncpg.Connection, exc: BaseException) -> None:
        self.kafka.failed(exc)
        obs.RELAY_ERRORS.labels(topic=self.config.topic).inc()
        obs.KAFKA_UNREACHABLE.labels(topic=self.config.topic).set(1)
        obs.OUTBOX_BACKLOG.labels(topic=self.config.topic).set(await conn.fetchval("select count(*) from outbox"))


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a batch's failure as seen: a batch failed by a producer reset, or queued behind a row that was not, is
    answered by the rows left in the outbox, not by its future."""
    if not future.cancelled():
        future.exception()


def _kafka_fault(exc: BaseException) -> bool:
    """A failure of the broker (retried while keeping the lead), not of the database."""
    return isinstance(exc, KafkaError) and faults.is_transient(exc)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep, waking early on stop; returns whether stop is set."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
    return stop.is_set()

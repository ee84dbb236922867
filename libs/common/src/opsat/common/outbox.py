"""Outbox relay: events not yet acknowledged by Kafka -> Kafka -> removed from the outbox.

Works from "what is still in the outbox", never from "positions above the last one seen", so an
event whose transaction commits late (identity positions commit out of order) is still published.
One relay per database is active at a time (PostgreSQL advisory lock); the others wait as hot
standbys. Delivery is at least once; consumers drop duplicates by event id.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from opsat.common import observability as obs
from opsat.common.db import OUTBOX_CHANNEL, connect_raw
from opsat.common.envelope import encode, to_cloudevent

log = logging.getLogger(__name__)

_PENDING = """
    select e.position, e.stream_id, e.stream_type, e.version, e.event_id::text as event_id, e.event_type,
           e.schema_version, e.data::text as data, e.metadata::text as metadata, e.recorded_at
    from outbox o join events e on e.position = o.position
    order by o.position
    limit $1
"""


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

    # --- one batch ----------------------------------------------------------------------
    async def publish_batch(self, conn: asyncpg.Connection) -> int:
        """Publish up to batch_size pending events in position order; returns how many left the outbox."""
        rows = await conn.fetch(_PENDING, self.config.batch_size)
        if not rows:
            return 0
        producer = await self._ensure_producer()
        futures = []
        try:
            for row in rows:
                futures.append(await producer.send(self.config.topic, **self._message(row)))
        except KafkaError:
            pass  # fall through: whatever was queued is awaited below, the rest waits for the next round
        acked: list[int] = []
        failure: BaseException | None = None
        for row, fut in zip(rows, futures):
            try:
                await fut
            except KafkaError as exc:
                failure = exc
                break  # keep order: nothing after the first failure counts as acknowledged
            acked.append(row["position"])
        if acked:
            await conn.execute("delete from outbox where position = any($1::bigint[])", acked)
            self.published += len(acked)
            obs.EVENTS_PUBLISHED.labels(topic=self.config.topic).inc(len(acked))
        if failure is not None or len(acked) < len(rows):
            await self._reset_producer()
            raise failure or KafkaError("send failed before every event of the batch was queued")
        return len(acked)

    def _message(self, row: asyncpg.Record) -> dict[str, Any]:
        event = to_cloudevent(
            source=self.config.source,
            event_id=row["event_id"],
            ce_type=f"{row['event_type']}.v{row['schema_version']}",
            stream_id=row["stream_id"],
            stream_type=row["stream_type"],
            version=row["version"],
            time=row["recorded_at"],
            data=json.loads(row["data"]),
            metadata=json.loads(row["metadata"]),
        )
        return {
            "key": row["stream_id"].encode(),
            "value": encode(event),
            "headers": [
                ("id", row["event_id"].encode()),
                ("type", event["type"].encode()),
                ("content-type", b"application/cloudevents+json"),
            ],
        }

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
        if producer is not None:
            try:
                await producer.stop()
            except Exception:  # a broken producer may fail to close; a fresh one replaces it anyway
                log.debug("producer stop failed", exc_info=True)

    async def close(self) -> None:
        """Close the Kafka producer (the loop in `run` does this itself when stopped)."""
        await self._reset_producer()

    async def drain(self, conn: asyncpg.Connection) -> int:
        """Publish until the outbox is empty."""
        total = 0
        while n := await self.publish_batch(conn):
            total += n
        return total

    # --- the long-running loop ------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._lead(stop)
                backoff = 0.5
            except Exception as exc:  # broker or database away: back off and lead again
                log.warning("outbox relay: %s; retrying in %.1fs", exc or type(exc).__name__, backoff)
                obs.RELAY_ERRORS.labels(topic=self.config.topic).inc()
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 10.0)
        await self.close()

    async def _lead(self, stop: asyncio.Event) -> None:
        conn = await connect_raw(self.config.database_url)
        try:
            while not await conn.fetchval("select pg_try_advisory_lock($1)", lock_key(self.config.topic)):
                self.is_leader = False
                if await _sleep_or_stop(stop, self.config.poll_interval_s):
                    return
            self.is_leader = True
            await conn.add_listener(OUTBOX_CHANNEL, lambda *_: self._wakeup.set())
            while not stop.is_set():
                self._wakeup.clear()
                await self.drain(conn)
                obs.OUTBOX_BACKLOG.labels(topic=self.config.topic).set(
                    await conn.fetchval("select count(*) from outbox")
                )
                # NOTIFY wakes us at once; the timeout is the fallback if a notification is lost.
                waiter = asyncio.ensure_future(self._wakeup.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, stopper}, timeout=self.config.poll_interval_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
        finally:
            self.is_leader = False
            await conn.close(timeout=5)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep, waking early on stop; returns whether stop is set."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
    return stop.is_set()

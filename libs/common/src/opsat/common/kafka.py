"""Topic administration (create the topics a service needs, with explicit partition counts) and the partition of
a key, as the producers choose it."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)

TOPICS_READY_TIMEOUT_S = 30.0


async def ensure_topics(bootstrap: str, topics: dict[str, int], *, replication: int = 1,
                        ready_timeout_s: float = TOPICS_READY_TIMEOUT_S) -> None:
    """Create missing topics ({name: partitions}); existing ones are left as they are. Returns once the broker's
    metadata shows every one of them with a leader for each partition (or after `ready_timeout_s`, with a
    warning): a consumer that subscribes right after a creation the metadata does not show yet is assigned
    nothing until its next metadata refresh (`OPSAT_KAFKA_METADATA_MAX_AGE_MS`, 30 s by default).

    Production sets OPSAT_KAFKA_REPLICATION_FACTOR (e.g. 3): a topic created with 1 replica stays so."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, partitions, replication) for name, partitions in topics.items() if name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another replica created it first
        await wait_until_led(admin.describe_topics, set(topics), ready_timeout_s)
    finally:
        await admin.close()


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    """The topic's partition numbers, from the broker's metadata if the consumer has none yet (about 5 s of tries for a
    topic just created; empty if it never appears)."""
    client = consumer._client  # noqa: SLF001 - aiokafka has no public call for a topic's metadata
    for _ in range(50):
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        # The topic tracked first, so the update asks for the tracked topics' metadata only: with none tracked it
        # asks for every topic's (90-140 ms on a broker with 2,777 topics, against 4), in each lane of a rebuild.
        client.add_topic(topic)  # (its future is the update's awaited below)
        await client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        await asyncio.sleep(0.1)
    return []


async def wait_until_led(describe: Callable[[list[str]], Awaitable[list[dict[str, Any]]]], topics: set[str],
                         timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll `describe` (the admin client's metadata of topics) until each topic is known and every partition has a
    leader; False, with a warning naming the others, if `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    waiting = set(topics)
    while True:
        waiting -= {t["topic"] for t in await describe(sorted(waiting)) if _led(t)}
        if not waiting:
            return True
        if time.monotonic() >= deadline:
            log.warning("topics %s have no leader for every partition after %.0f s; their consumers start anyway and "
                        "read them once their metadata shows them", sorted(waiting), timeout_s)
            return False
        await asyncio.sleep(interval_s)


def _led(topic: dict[str, Any]) -> bool:
    partitions = topic.get("partitions") or []
    return not topic.get("error_code") and bool(partitions) and all(
        not p.get("error_code") and p.get("leader", -1) >= 0 for p in partitions)


_M = 0x5BD1E995  # murmur2's mixing constant


def murmur2_many(keys: Sequence[bytes]) -> list[int]:
    """murmur2 of many keys of one length at once: each key's 32-bit state lives in its own 64-bit lane of one big
    integer, so each step of the hash is a handful of big-integer operations for all the keys (a product of a lane
    by the 31-bit constant stays below 2^63 and never carries into the next lane; shifts are masked back to 32
    bits before the next product). About a quarter of the cost of hashing them one by one."""
    count = len(keys)
    if not count:
        return []
    length = len(keys[0])
    order = sys.byteorder
    lane_mask = int.from_bytes(b"\xff\xff\xff\xff\0\0\0\0" * count, "little")
    h = (0x9747B28C ^ length) * int.from_bytes(b"\x01\0\0\0\0\0\0\0" * count, "little")
    words = length >> 2
    if words:
        flat = array("I")  # every key's whole words, key after key
        flat.frombytes(b"".join(keys) if length == words * 4 else b"".join(k[:words * 4] for k in keys))
        if order == "big":
            flat.byteswap()  # murmur2 reads little-endian words
        for j in range(words):
            k = int.from_bytes(array("Q", flat[j::words]).tobytes(), order)
            k = (k * _M) & lane_mask
            k = (((k ^ (k >> 24)) & lane_mask) * _M) & lane_mask
            h = ((h * _M) & lane_mask) ^ k
    if length & 3:  # the last 1-3 bytes, as one little-endian number per key
        tails = array("Q", (int.from_bytes(k[words * 4:], "little") for k in keys))
        h = ((h ^ int.from_bytes(tails.tobytes(), order)) * _M) & lane_mask
    h = (h ^ (h >> 13)) & lane_mask
    h = (h * _M) & lane_mask
    h = (h ^ (h >> 15)) & lane_mask
    return array("Q", h.to_bytes(8 * count, order)).tolist()


def partitions_for(keys: Sequence[bytes], partitions: Sequence[int]) -> list[int]:
    """The partition the producers' default partitioner gives each key among a topic's `partitions` (sorted ids):
    Kafka's murmur2 of the key, as aiokafka's and the Java client's. Keys of one length are hashed together."""
    by_length: dict[int, list[int]] = {}
    for n, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(n)
    out = [0] * len(keys)
    count = len(partitions)
    for indexes in by_length.values():
        for n, hashed in zip(indexes, murmur2_many([keys[n] for n in indexes]), strict=True):
            out[n] = partitions[(hashed & 0x7FFFFFFF) % count]
    return out

"""Real Kafka and PostgreSQL for tests: the local ones from deploy/local/infra.sh, or external ones.

External infrastructure is chosen by setting both OPSAT_TEST_DATABASE_ADMIN_URL and
OPSAT_TEST_KAFKA_BOOTSTRAP; it is used as is and cannot be stopped or started by tests.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

EXTERNAL_DATABASE_ENV = "OPSAT_TEST_DATABASE_ADMIN_URL"
EXTERNAL_KAFKA_ENV = "OPSAT_TEST_KAFKA_BOOTSTRAP"
SCRIPT_ENV = "OPSAT_INFRA_SCRIPT"
SCRIPT_PATH = Path("deploy/local/infra.sh")


@dataclass(frozen=True)
class LocalInfra:
    database_admin_url: str  # postgresql://user@host:port/postgres, superuser
    kafka_bootstrap: str  # host:port
    script: Path | None = None  # None: external infrastructure, not under our control

    @property
    def can_restart(self) -> bool:
        return self.script is not None

    def stop_kafka(self) -> None:
        self._kafka("stop")

    def start_kafka(self) -> None:
        """Start the broker and return once it serves metadata requests."""
        self._kafka("start")

    def restart_kafka(self) -> None:
        self._kafka("restart")

    def kill_kafka(self) -> None:
        """SIGKILL the broker (no controlled shutdown: what a crash or an OOM kill does)."""
        self._kafka("kill")

    async def stop_kafka_async(self) -> None:
        """As stop_kafka, without blocking the event loop (clients keep running meanwhile)."""
        await asyncio.to_thread(self.stop_kafka)

    async def start_kafka_async(self) -> None:
        await asyncio.to_thread(self.start_kafka)

    def stop_postgres(self, *, immediate: bool = True) -> None:
        """Stop PostgreSQL; immediate by default (no checkpoint, clients cut off: what a crash does)."""
        self._run("pg", "kill" if immediate else "stop")

    def start_postgres(self) -> None:
        """Start PostgreSQL and return once it accepts connections (after crash recovery)."""
        self._run("pg", "start")

    async def stop_postgres_async(self, *, immediate: bool = True) -> None:
        await asyncio.to_thread(lambda: self.stop_postgres(immediate=immediate))

    async def start_postgres_async(self) -> None:
        await asyncio.to_thread(self.start_postgres)

    def _kafka(self, action: str) -> None:
        self._run("kafka", action)

    def _run(self, *args: str) -> None:
        if self.script is None:
            raise RuntimeError(
                f"Kafka and PostgreSQL are external ({EXTERNAL_DATABASE_ENV} and {EXTERNAL_KAFKA_ENV} are set) and "
                f"cannot be stopped or started by tests; unset both to use the local infrastructure"
            )
        run_script(self.script, *args)


def run_script(script: Path, *args: str) -> str:
    """Run infra.sh; on failure raise with its output (it names the log file to read)."""
    done = subprocess.run([str(script), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"{script} {' '.join(args)} failed (exit {done.returncode}):\n{done.stderr}{done.stdout}"
        )
    return done.stdout


def find_script(*start_dirs: Path) -> Path:
    """$OPSAT_INFRA_SCRIPT, else deploy/local/infra.sh in one of start_dirs or their parents."""
    if os.environ.get(SCRIPT_ENV):
        return Path(os.environ[SCRIPT_ENV])
    for start in start_dirs:
        for folder in (start, *start.parents):
            if (folder / SCRIPT_PATH).is_file():
                return folder / SCRIPT_PATH
    raise RuntimeError(f"{SCRIPT_PATH} not found above {', '.join(map(str, start_dirs))}; set {SCRIPT_ENV}")


def parse_env(text: str) -> dict[str, str]:
    """`export NAME=value` lines, as printed by `infra.sh env`."""
    pairs = (line.removeprefix("export ").split("=", 1) for line in text.splitlines() if "=" in line)
    return {name.strip(): value.strip() for name, value in pairs}


def provide(*start_dirs: Path) -> LocalInfra:
    """External infrastructure if configured, else the local one, started (idempotently) if needed."""
    database, kafka = os.environ.get(EXTERNAL_DATABASE_ENV), os.environ.get(EXTERNAL_KAFKA_ENV)
    if database and kafka:
        return LocalInfra(database_admin_url=database, kafka_bootstrap=kafka)
    if database or kafka:
        raise RuntimeError(f"set both {EXTERNAL_DATABASE_ENV} and {EXTERNAL_KAFKA_ENV}, or neither")
    script = find_script(*start_dirs)
    run_script(script, "up")
    env = parse_env(run_script(script, "env"))
    return LocalInfra(env["OPSAT_DATABASE_ADMIN_URL"], env["OPSAT_KAFKA_BOOTSTRAP"], script)


_namespaces: set[str] = set()  # made in this process: the test session deletes their topics at its end


def new_topic_namespace() -> str:
    namespace = f"t{uuid.uuid4().hex[:8]}"
    _namespaces.add(namespace)
    return namespace


def namespaces_made() -> frozenset[str]:
    return frozenset(_namespaces)


async def delete_topics_under(bootstrap: str, namespaces: Collection[str], *, timeout: float = 30.0) -> list[str]:
    """Delete every topic whose name begins with one of `namespaces` (the test session's, a bench run's); returns their
    names."""
    if not namespaces:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(tuple(namespaces))]
        for start in range(0, len(ours), 200):  # (a request per few hundred: each names them all)
            await admin.delete_topics(ours[start:start + 200], timeout_ms=int(timeout * 1000))
        return ours
    finally:
        await admin.close()


async def consume_all(
    bootstrap: str, topic: str, *, min_count: int, timeout: float = 20.0
) -> list[ConsumerRecord]:
    """Read `topic` from the beginning until at least `min_count` records arrived or `timeout` expired.

    No consumer group: nothing is committed, and every call sees the whole topic. The topic may
    appear only after the call starts (metadata is refreshed every 0.5 s).
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=500,
    )
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    await consumer.start()
    try:
        while len(records) < min_count and (left := deadline - time.monotonic()) > 0:
            batches = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def consume_to_end(bootstrap: str, topic: str, *, timeout: float = 20.0) -> list[ConsumerRecord]:
    """Every record of `topic` from the beginning, at least up to the end offsets it had when the call started.

    For "nothing more arrived" checks: the end offsets say when everything is read, so no wait is spent on
    records that never come. No consumer group, nothing committed.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", metadata_max_age_ms=500)
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    await consumer.start()
    try:
        while not (numbers := consumer.partitions_for_topic(topic)):
            assert time.monotonic() < deadline, f"topic {topic} not found"
            await consumer.topics()  # fresh metadata
            await asyncio.sleep(0.1)
        partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, f"{topic} not read to its end offsets {ends} in {timeout:.0f}s"
            batches = await consumer.getmany(*partitions, timeout_ms=200)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def reset_group_to_earliest(bootstrap: str, group_id: str, topic: str, partitions: int) -> None:
    """What an operator does to replay a topic: commit offset 0 for every partition of a (stopped) group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or range(partitions))]
        consumer.assign(assigned)
        await consumer.commit({tp: 0 for tp in assigned})
    finally:
        await consumer.stop()

"""(2) Command-to-read-model latency at a steady submit rate, with the real API and worker processes.

Open loop: submit i is sent at t0 + i/rate whatever happened to the earlier ones (so a slow pipeline
shows up as latency, not as a lower rate). For every request id we keep the send and response times;
a poller asks PostgreSQL every ~5 ms `select id from read_model.requests where id = any($1)` for the
ids not yet seen, and stamps each found row with the poll's start time (the row was visible to that
query's snapshot). A "tap" consumer on the topic stamps when each event reached Kafka, which splits
the latency into relay (response -> Kafka) and projection (Kafka -> row).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg
from common import (
    SUBMIT_BODY,
    Bench,
    CpuMeter,
    Result,
    jvm_compiler_seconds,
    kafka_pid,
    postgres_cpu_seconds,
    r,
    summary_ms,
)
from httpraw import RawClient


async def _tap(bootstrap: str, topic: str, seen: dict[str, float], ready: asyncio.Event,
               stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                isolation_level="read_committed", fetch_max_wait_ms=5)
    await consumer.start()
    try:
        parts: set[int] = set()
        for _ in range(50):
            await consumer._client.force_metadata_update()  # noqa: SLF001 - as opsat.common.consumer does
            parts = consumer.partitions_for_topic(topic) or set()
            if parts:
                break
            await asyncio.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end positions now, before the run starts
            await consumer.position(tp)
        ready.set()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50)
            now = time.perf_counter()
            for records in batch.values():
                for rec in records:
                    seen.setdefault(rec.key.decode(), now)
    finally:
        ready.set()
        await consumer.stop()


async def run(bench: Bench, rate: float = 200.0, seconds: float = 10.0, poll_s: float = 0.005,
              drain_timeout_s: float = 10.0, worker_env: dict[str, str] | None = None) -> tuple[Result, dict[str, Any]]:
    from opsat.intake.service import SERVICE

    TOPIC_PARTITIONS = SERVICE.partitions

    db = await bench.create_database("latency")
    ns = f"{bench.namespace}lat"  # its own topics: the replay bench reads bench<id>.intake.events
    topic = f"{ns}.intake.events"
    # The worker creates these itself (SERVICE.ensure_topics); creating them first keeps the bench
    # independent of that code path and gives the tap consumer its partitions at once.
    await bench.create_topics({topic: TOPIC_PARTITIONS, f"{ns}.intake.requests.dlq": 1,
                               f"{ns}.intake.auto_close.dlq": 1})
    api, url = await bench.start_api(db, 1, "latency", namespace=ns)
    worker = await bench.start_worker(db, "latency", namespace=ns, **(worker_env or {}))
    host, _, port = url.removeprefix("http://").partition(":")
    from common import token

    client = RawClient(host, int(port), {"Authorization": f"Bearer {token()}"}, 32)
    await client.open()
    payload = client.build("POST", "/api/v1/requests", json.dumps(SUBMIT_BODY).encode())
    conn = await asyncpg.connect(bench.infra.dsn(db))

    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    in_kafka: dict[str, float] = {}
    in_rm: dict[str, float] = {}
    http_lat: list[float] = []
    errors: dict[str, int] = {}
    pending: set[str] = set()

    async def submit() -> None:
        t = time.perf_counter()
        try:
            status, body = await client.send(payload)
        except OSError as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            return
        done = time.perf_counter()
        if status != 201:
            errors[str(status)] = errors.get(str(status), 0) + 1
            return
        rid = json.loads(body)["request_id"]
        sent[rid], answered[rid] = t, done
        http_lat.append(done - t)
        pending.add(rid)

    polls = {"count": 0, "busy_s": 0.0, "max_pending": 0}

    async def poller(stop: asyncio.Event) -> None:
        """Every poll_s, or twice the last query's time when that is longer: a pipeline that falls
        behind grows the pending set, and the poller must not add to the database's load in step."""
        while not stop.is_set() or pending:
            wait = poll_s
            if pending:
                ids = list(pending)
                t = time.perf_counter()
                for row in await conn.fetch("select id from read_model.requests where id = any($1::text[])", ids):
                    in_rm[row["id"]] = t
                    pending.discard(row["id"])
                took = time.perf_counter() - t
                polls["count"] += 1
                polls["busy_s"] += took
                polls["max_pending"] = max(polls["max_pending"], len(ids))
                wait = max(poll_s, 2 * took)
            await asyncio.sleep(wait)

    # Warm-up: the worker's consumer group must have joined and the pipeline must flow end to end.
    warm_stop = asyncio.Event()
    warm_poll = asyncio.ensure_future(poller(warm_stop))
    t_warm = time.perf_counter()
    for _ in range(10):
        await submit()
    warm_stop.set()
    try:
        await asyncio.wait_for(warm_poll, timeout=60)
    except TimeoutError:
        raise RuntimeError(f"the read model did not catch up within 60 s of warm-up:\n{worker.tail()}") from None
    warmup_s = time.perf_counter() - t_warm
    for d in (sent, answered, in_rm):
        d.clear()
    http_lat.clear()
    polls.update(count=0, busy_s=0.0, max_pending=0)

    tap_stop, tap_ready = asyncio.Event(), asyncio.Event()
    tap = asyncio.ensure_future(_tap(bench.infra.bootstrap, topic, in_kafka, tap_ready, tap_stop))
    await asyncio.wait_for(tap_ready.wait(), 30)

    meter = CpuMeter({"api": api.pids, "worker": worker.pids, "=postgres": postgres_cpu_seconds,
                      "kafka": lambda: [p for p in [kafka_pid()] if p],
                      "bench_process (client, poller, tap)": lambda: [__import__("os").getpid()]})
    stop = asyncio.Event()
    poll_task = asyncio.ensure_future(poller(stop))
    n = int(rate * seconds)
    t0 = time.perf_counter() + 0.05
    jit_before = jvm_compiler_seconds(kafka_pid())
    meter.start()
    tasks = []
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(submit()))
    await asyncio.gather(*tasks)
    send_window = time.perf_counter() - t0
    stop.set()
    try:
        await asyncio.wait_for(poll_task, timeout=drain_timeout_s)
    except TimeoutError:
        pass
    cpu = meter.stop()
    cpu["kafka_jit_compiler_cores (part of kafka's)"] = r((jvm_compiler_seconds(kafka_pid()) - jit_before)
                                                           / cpu["wall_s"], 2)
    await asyncio.sleep(0.2)
    tap_stop.set()
    await tap
    rss = {"api": bench.record_rss("api", api), "worker": bench.record_rss("worker", worker)}
    await client.close()
    await conn.close()
    bench.stop(api)
    bench.stop(worker)

    ids = [i for i in answered if i in in_rm]
    from_response = [in_rm[i] - answered[i] for i in ids]
    from_send = [in_rm[i] - sent[i] for i in ids]
    relay = [in_kafka[i] - answered[i] for i in ids if i in in_kafka]
    projection = [in_rm[i] - in_kafka[i] for i in ids if i in in_kafka]
    s = summary_ms(from_response)
    details = {
        "rate_target_per_s": rate, "submits_ok": len(answered), "achieved_rate_per_s": r(len(answered) / send_window, 1),
        "errors": errors, "missing_in_read_model_after_wait": len(pending),
        "latency_from_http_response": s, "latency_from_send": summary_ms(from_send),
        "http_submit_latency": summary_ms(http_lat),
        "split_response_to_kafka (relay)": summary_ms(relay),
        "split_kafka_to_read_model (projection)": summary_ms(projection),
        "poll_interval_ms": poll_s * 1000,
        "polls": {"count": polls["count"], "mean_query_ms": r(polls["busy_s"] / max(1, polls["count"]) * 1000, 3),
                  "max_ids_pending": polls["max_pending"]},
        "warmup_s": r(warmup_s), "cpu": cpu, "rss": rss,
    }
    result = Result.measured("command_to_read_model_latency_p99", s["p99_ms"], "ms", ("<=", 250), details)
    return result, {"p50_ms": s["p50_ms"]}

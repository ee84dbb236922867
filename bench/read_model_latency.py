"""(2) Command-to-read-model latency at a steady submit rate, with the real API and worker processes.

Open loop: submit i is sent at t0 + i/rate whatever happened to the earlier ones (so a slow pipeline
shows up as latency, not as a lower rate). For every request id we keep the send and response times.
The bench LISTENs on the read model's channel (the projection NOTIFYs in each batch's transaction, delivered at
commit) and on each notification asks PostgreSQL `select id from read_model.requests where id = any($1)` for
the ids not yet seen, stamping each found row with the query's start time (the row was visible to its snapshot);
it also asks every 100 ms without one. The bench's topic stamps each record with the broker's append time
(`message.timestamp.type=LogAppendTime`), read back after the run, which splits the latency into relay
(response -> Kafka) and projection (Kafka -> row) without a consumer fetching beside the worker's during it. The
split sets the broker's clock against the moment the bench read the response: when the bench's own loop lags (at
500/s), a response can be read after its event reached Kafka, and the relay part comes out below zero.

The instruments are kept light because they share the two cores with what they measure: the earlier poller
(a query every 5 ms) and live tap (a fetch every 5 ms) cost the bench process about 0.1 of a core and the broker
and PostgreSQL more requests than the worker sent them.
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
    ReadModelCommits,
    Result,
    jvm_compiler_seconds,
    kafka_pid,
    postgres_cpu_seconds,
    r,
    summary_ms,
)
from httpraw import RawClient


async def _append_times(bootstrap: str, topic: str, start: dict[int, int]) -> dict[str, float]:
    """Each key's first record since `start` (partition -> offset), with the broker's append time (epoch s)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    seen: dict[str, float] = {}
    try:
        tps = [TopicPartition(topic, p) for p in start]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp.partition])
        end = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for rec in records:
                    seen.setdefault(rec.key.decode(), rec.timestamp / 1000)
    finally:
        await consumer.stop()
    return seen


async def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from opsat.common.kafka import topic_partitions

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await topic_partitions(consumer, topic)
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def run(bench: Bench, rate: float = 200.0, seconds: float = 10.0, poll_s: float = 0.1,
              drain_timeout_s: float = 10.0, worker_env: dict[str, str] | None = None) -> tuple[Result, dict[str, Any]]:
    from opsat.intake.service import SERVICE

    TOPIC_PARTITIONS = SERVICE.partitions

    tag = "" if rate == 200 else f"{rate:g}"  # a run per rate in one bench: its own database and topics
    db = await bench.create_database(f"latency{tag}")
    ns = f"{bench.namespace}lat{tag}"  # its own topics: the replay bench reads bench<id>.intake.events
    topic = f"{ns}.intake.events"
    # The worker creates these itself (SERVICE.ensure_topics); creating them first keeps the bench
    # independent of that code path, and its topic stamps records with the broker's append time.
    await bench.create_topics({topic: TOPIC_PARTITIONS, f"{ns}.intake.requests.dlq": 1,
                               f"{ns}.intake.auto_close.dlq": 1},
                              configs={topic: {"message.timestamp.type": "LogAppendTime"}})
    api, url = await bench.start_api(db, 1, f"latency{tag}", namespace=ns)
    worker = await bench.start_worker(db, f"latency{tag}", namespace=ns, **(worker_env or {}))
    host, _, port = url.removeprefix("http://").partition(":")
    from common import token

    client = RawClient(host, int(port), {"Authorization": f"Bearer {token()}"}, 32)
    await client.open()
    payload = client.build("POST", "/api/v1/requests", json.dumps(SUBMIT_BODY).encode())
    conn = await asyncpg.connect(bench.infra.dsn(db))
    commits = await ReadModelCommits.listen(bench.infra.dsn(db))

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
        """At each read-model commit (its notification), or every poll_s without one."""
        while not stop.is_set() or pending:
            await commits.wait(poll_s)
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

    start_offsets = await _end_offsets(bench.infra.bootstrap, topic)

    meter = CpuMeter({"api": api.pids, "worker": worker.pids, "=postgres": postgres_cpu_seconds,
                      "kafka": lambda: [p for p in [kafka_pid()] if p],
                      "bench_process (client, poller)": lambda: [__import__("os").getpid()]})
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
    epoch_minus_perf = time.time() - time.perf_counter()
    for key, appended in (await _append_times(bench.infra.bootstrap, topic, start_offsets)).items():
        in_kafka[key] = appended - epoch_minus_perf
    rss = {"api": bench.record_rss("api", api), "worker": bench.record_rss("worker", worker)}
    await client.close()
    await conn.close()
    await commits.close()
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
        "poll": f"at each read-model notification, else every {poll_s * 1000:.0f} ms",
        "polls": {"count": polls["count"], "mean_query_ms": r(polls["busy_s"] / max(1, polls["count"]) * 1000, 3),
                  "max_ids_pending": polls["max_pending"]},
        "warmup_s": r(warmup_s), "cpu": cpu, "rss": rss,
    }
    # The targets: p99 <= 100 ms at 200 submits/s, <= 250 ms at 500/s.
    name = "command_to_read_model_latency_p99" + ("" if rate == 200 else f"_at_{rate:g}_per_s")
    result = Result.measured(name, s["p99_ms"], "ms", ("<=", 100 if rate <= 200 else 250), details)
    return result, {"p50_ms": s["p50_ms"]}

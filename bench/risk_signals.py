"""Risk: signal evaluation over a replay of 100,000 upstream events (target ≥ 10,000/s).

A deterministic stream (tests/support/risk_upstream.py: 20 teams, 10 services, 90 days of intake submissions and
priority overrides, SLA clocks and breaches, feedback answers; each stream in order, streams interleaved) is
published as the relays would publish it to this run's `intake`, `sla` and `feedback` topics (6 partitions each).
The risk service's `SignalDriver` then replays all three through the kit's `ProjectionRunner` (rebuild mode: from
the beginning to the end offsets) into a fresh database migrated by `opsat-risk migrate`, twice, alternating:

- `per_event`: the runner calls `apply` for each event of a poll (how the driver ran before batching; also the
  runner's fallback when a batch fails), stopped at a time cap; the rate is over what it applied;
- `batched`: the runner calls `apply_batch` with each poll's events.

Each reports events/s, PostgreSQL round trips per event (asyncpg calls), the risk events it appended, and CPU
of this process and PostgreSQL; beside them the ratio batched / per_event, and the ratios to the machine's
limits measured in the same run (aiokafka consumer, raw inserts).

`--compare REF` instead times this tree's batched replay beside another git ref's, side by side in one run: the
stream is published once, then each round replays it once per tree, each in a child process with that tree's
code first on the import path, into a fresh database (events/s, CPU per event of the replay and of PostgreSQL,
the load average); results in bench/results/risk_signal_compare.json.
    .venv/bin/python bench/risk_signals.py --compare main --rounds 2
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from common import ROOT, Bench, CpuMeter, Result, count_roundtrips, kafka_pid, postgres_cpu_seconds, r

sys.path.insert(0, str(ROOT / "tests" / "support"))

EVENTS = 100_000
TEAMS = tuple(f"team-{i:02d}" for i in range(20))
SERVICES = tuple(f"svc-{i:02d}" for i in range(10))
STREAM_TYPES = {"intake": "request", "sla": "sla_clock", "feedback": "survey"}


class OneAtATime:
    """The driver as the runner drives a consumer without `apply_batch`: `apply` per event of a poll."""

    def __init__(self, driver: Any) -> None:
        self.driver, self.name, self.topics, self.metadata = driver, driver.name, driver.topics, driver.metadata

    async def apply(self, conn: Any, event: Any) -> None:
        await self.driver.apply(conn, event)


async def publish(bench: Bench, namespace: str, events: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer
    from risk_upstream import Shape, cloud_event, upstream

    t = time.perf_counter()
    shape = Shape(teams=TEAMS, services=SERVICES, days=90.0, answer=0.3,
                  team_csat=tuple(60.0 + (i % 5) * 5 for i in range(len(TEAMS))))
    stream = upstream(events, datetime.now(UTC) - timedelta(days=95), seed=16, shape=shape)
    generated_s = time.perf_counter() - t
    topics = {f"{namespace}.{source}.events": 6 for source in STREAM_TYPES}
    await bench.create_topics(topics)
    producer = AIOKafkaProducer(bootstrap_servers=bench.infra.bootstrap, acks="all", linger_ms=5,
                                max_batch_size=256 * 1024)
    await producer.start()
    t = time.perf_counter()
    by_source: Counter[str] = Counter()
    try:
        pending = []
        for source, event in stream:
            by_source[source] += 1
            pending.append(await producer.send(f"{namespace}.{source}.events", cloud_event(event, STREAM_TYPES[source]),
                                               key=event.subject.encode()))
            if len(pending) >= 5_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return {"events": len(stream), "by_source": dict(by_source), "generate_s": r(generated_s),
            "publish_s": r(time.perf_counter() - t)}


async def replay(bench: Bench, namespace: str, variant: str, cap_s: float, events: int) -> dict[str, Any]:
    from opsat.common.consumer import ProjectionRunner
    from opsat.common.db import create_engine
    from opsat.common.eventstore import EventStore
    from opsat.risk.service import SERVICE
    from opsat.risk.settings import RiskSettings

    db = await bench.create_database(f"risk_{variant}", service="risk")
    settings = RiskSettings(database_url=bench.infra.sqlalchemy_url(db), kafka_bootstrap=bench.infra.bootstrap,
                            topic_namespace=namespace)
    engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
    driver = SERVICE.consumer(settings, "risk_signals")
    driver.handler = SERVICE.command_handler(settings, EventStore(engine, SERVICE.registry()))
    consumer = driver if variant == "batched" else OneAtATime(driver)
    runner = ProjectionRunner(engine, consumer, SERVICE.runner_config(settings, "risk_signals", until_end=True))
    meter = CpuMeter({"bench_process": lambda: [os.getpid()], "=postgres": postgres_cpu_seconds,
                      "kafka": lambda: [p for p in [kafka_pid()] if p]})
    stop = asyncio.Event()
    capped = False
    with count_roundtrips() as trips:
        meter.start()
        t0 = time.perf_counter()
        task = asyncio.ensure_future(runner.run(stop))
        done, _ = await asyncio.wait({task}, timeout=cap_s)
        if not done:
            capped = True
            stop.set()  # the runner finishes the poll in hand, commits it and returns
            await task
        elapsed = time.perf_counter() - t0
        cpu = meter.stop()
    stats = task.result()
    conn = await asyncpg.connect(bench.infra.dsn(db))
    try:
        appended = dict(await conn.fetch("select event_type, count(*) from events where stream_type in"
                                         " ('risk', 'risk_emergency') group by event_type"))
        observations = await conn.fetchval("select count(*) from reactions.signal_observations")
    finally:
        await conn.close()
        await engine.dispose()
    applied = stats.applied
    return {"applied": applied, "seconds": r(elapsed, 2), "events_per_s": r(applied / elapsed, 0) if elapsed else None,
            "capped_at_s": cap_s if capped else None, "of_events": events,
            "roundtrips_per_event": r(sum(trips.values()) / applied, 2) if applied else None,
            "roundtrips_top": dict(trips.most_common(8)), "observations_stored": observations,
            "risk_events_appended": {k.removeprefix("opsat.risk."): v for k, v in sorted(appended.items())},
            "cpu": cpu}


async def run(bench: Bench, events: int = EVENTS, per_event_cap_s: float = 20.0, batched_cap_s: float = 90.0
              ) -> list[Result]:
    namespace = f"{bench.namespace}risk"
    published = await publish(bench, namespace, events)
    per_event = await replay(bench, namespace, "per_event", per_event_cap_s, events)
    batched = await replay(bench, namespace, "batched", batched_cap_s, events)
    ratio = r(batched["events_per_s"] / per_event["events_per_s"], 2) if per_event["events_per_s"] else None
    details = {"published": published, "batched": batched, "per_event": per_event,
               "ratio_batched_to_per_event": ratio,
               "note": "per_event is stopped at its cap (its rate is over what it applied); both read the same topics"}
    return [
        Result.measured("risk_signal_evaluation", batched["events_per_s"], "events/s", (">=", 10_000), details),
        Result.measured("risk_signal_evaluation_per_event", per_event["events_per_s"], "events/s", None,
                        {"what": "the same replay with apply per event (before batching)", **per_event}),
    ]


async def child(namespace: str, events: int, cap_s: float) -> dict[str, Any]:
    """One batched replay of the published topics with the code on this interpreter's import path."""
    from common import infra_up

    bench = Bench(infra_up())
    try:
        result = await replay(bench, namespace, "batched", cap_s, events)
    finally:
        await bench.drop_databases()
    cpu, applied = result["cpu"], result["applied"]
    busy = cpu["cores_busy"]
    result["replay_cpu_us_per_event"] = r(busy["bench_process"] * cpu["wall_s"] / applied * 1e6, 1)
    result["postgres_cpu_us_per_event"] = r(busy["postgres"] * cpu["wall_s"] / applied * 1e6, 1)
    return result


def compare(ref: str, rounds: int, events: int, cap_s: float) -> None:
    import json

    from common import code_trees, in_turn, infra_up, run_child

    load_before = os.getloadavg()
    with code_trees(ref) as trees:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        bench = Bench(infra_up())
        namespace = f"{bench.namespace}risk"
        try:
            published = asyncio.run(publish(bench, namespace, events))
            for round_ in range(rounds):
                order = in_turn(trees, round_)
                for name, paths in order:
                    runs[name].append(run_child(__file__, paths, ["--namespace", namespace, "--events", str(events),
                                                                  "--cap", str(cap_s)]))
                    x = runs[name][-1]
                    print(f"  round {round_ + 1} {name}: {x['events_per_s']:,.0f} events/s, CPU us/event replay "
                          f"{x['replay_cpu_us_per_event']} + postgres {x['postgres_cpu_us_per_event']}, "
                          f"machine busy {x['cpu']['cores_busy']['machine_busy']} of 2 cores "
                          f"(others {x['cpu']['cores_busy']['other_programs']})", flush=True)
        finally:
            asyncio.run(bench.cleanup())
    best = {name: max(xs, key=lambda x: x["events_per_s"]) for name, xs in runs.items()}
    rate_to_ref = r(best["this tree"]["events_per_s"] / best[ref]["events_per_s"], 2)
    print(f"risk signal evaluation, batched replay of {events:,} upstream events (best of {rounds}):")
    for name, x in best.items():
        print(f"  {name:<12} {x['events_per_s']:>9,.0f} events/s   CPU us/event: replay "
              f"{x['replay_cpu_us_per_event']}, postgres {x['postgres_cpu_us_per_event']}")
    load_after = os.getloadavg()
    print(f"  this tree / {ref}: {rate_to_ref}; load average before {load_before}, after {load_after}")
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "risk_signal_compare.json").write_text(json.dumps(
        {"name": "risk_signal_compare", "events": events, "ref": ref, "published": published, "best": best,
         "runs": runs, "rate_to_ref": rate_to_ref, "loadavg_before": load_before, "loadavg_after": load_after,
         "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    import argparse
    import json

    from common import infra_up

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 events and a shorter per-event cap")
    parser.add_argument("--events", type=int, help=f"upstream events (default {EVENTS:,}, 20,000 with --quick)")
    parser.add_argument("--compare", help="git ref whose batched replay runs beside this tree's")
    parser.add_argument("--rounds", type=int, default=2, help="with --compare: replays per tree, alternating")
    parser.add_argument("--cap", type=float, default=120.0, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n_events = args.events or (20_000 if args.quick else EVENTS)
    if args.child:
        print(json.dumps(asyncio.run(child(args.namespace, n_events, args.cap)), default=str))
        sys.exit(0)
    if args.compare:
        compare(args.compare, args.rounds, n_events, args.cap)
        sys.exit(0)

    async def main() -> None:
        bench = Bench(infra_up())
        try:
            for result in await run(bench, events=n_events, per_event_cap_s=8 if args.quick else 20):
                result.write()
                d = result.details
                print(result.name, result.value, result.unit, result.target,
                      {k: d.get(k) for k in ("applied", "seconds", "roundtrips_per_event", "capped_at_s",
                                             "ratio_batched_to_per_event") if k in d})
                if "batched" in d:
                    print("  batched:", {k: d["batched"][k] for k in ("applied", "seconds", "roundtrips_per_event",
                                                                        "risk_events_appended", "roundtrips_top")})
        finally:
            await bench.cleanup()

    asyncio.run(main())

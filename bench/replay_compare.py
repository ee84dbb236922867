"""Projection replay (rebuild) beside the aiokafka consumer limit and beside another git ref's replay, in one run.

One topic is filled once (bench/relay_replay: a `--events` backlog of RequestSubmitted written with one
INSERT ... SELECT, drained by the relay into a 6-partition topic). Then each round runs, per tree, a child
process with that tree's code first on the import path: `opsat.common.projections.rebuild(engine,
RequestsProjection(topic), runner_config(settings, "requests"), schema)` into a fresh schema of the same
database, timing it and taking the CPU of the child (the replay, with its lane processes) and of PostgreSQL over the
rebuild only.
The aiokafka consumer's own rate on the topic (getmany, nothing done with the records) runs between rounds.
Prints events/s, CPU per event (replay process + PostgreSQL), the ratio to the consumer limit and to the
ref, the load average; writes bench/results/replay_compare.json.

    .venv/bin/python bench/replay_compare.py --compare main --rounds 2
    .venv/bin/python bench/replay_compare.py --compare main --lifecycle   # whole lifecycles, not submits only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


async def child(url: str, bootstrap: str, namespace: str, topic: str, schema: str, profile: str | None
                ) -> dict[str, Any]:
    import asyncpg
    from common import own_cpu_seconds, postgres_cpu_seconds

    from opsat.common.db import create_engine
    from opsat.common.projections import rebuild
    from opsat.intake.projections.requests import RequestsProjection
    from opsat.intake.service import SERVICE
    from opsat.intake.settings import IntakeSettings

    settings = IntakeSettings(database_url=url, kafka_bootstrap=bootstrap, topic_namespace=namespace)
    assert settings.topic("intake") == topic
    engine = create_engine(url, pool_size=settings.database_pool_size)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    try:
        pg0, cpu0, t0 = postgres_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
        if profiler:
            profiler.enable()
        config = SERVICE.runner_config(settings, "requests")
        if profiler:  # its lanes in this process, where the profile sees them
            config = replace(config, rebuild_lane_processes=False)
        stats = await rebuild(engine, RequestsProjection(topic), config, schema)
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)
        wall, cpu, pg = time.perf_counter() - t0, own_cpu_seconds() - cpu0, postgres_cpu_seconds() - pg0
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        rows = await conn.fetchval(f'select count(*) from "{schema}".requests')
        await conn.execute(f'drop schema if exists "{schema}" cascade')
    finally:
        await conn.close()
    n = stats.applied
    return {"events_per_s": round(n / wall), "applied": n, "requests_rows": rows, "seconds": round(wall, 2),
            "replay_cpu_us_per_event": round(cpu / n * 1e6, 1), "postgres_cpu_us_per_event": round(pg / n * 1e6, 1),
            "cpu_us_per_event": round((cpu + pg) / n * 1e6, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "lane_process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


async def fill(bench: Any, events: int, lifecycle: bool) -> dict[str, Any]:
    """The backlog drained by this tree's relay into the topic the intake worker would use: submits only, or
    (`lifecycle`) requests submitted, accepted, started, awaiting the customer and back, a tenth resolved (about
    5.1 events per request, interleaved across requests as live traffic is)."""
    import asyncpg
    from relay_replay import fill_backlog

    from opsat.common.outbox import OutboxRelay, RelayConfig
    from opsat.intake.service import SERVICE

    db = await bench.create_database("replaycmp")
    dsn, url = bench.infra.dsn(db), bench.infra.sqlalchemy_url(db)
    topic = f"{bench.namespace}.intake.events"
    if lifecycle:
        from sla_clocks import fill_intake_topic

        filled = await fill_intake_topic(bench, round(events / 5.1), topic, "replaylife")
        return {"url": url, "topic": topic, "events": filled["events"], "by_type": filled["by_type"]}
    await bench.create_topics({topic: SERVICE.partitions})
    await fill_backlog(dsn, events)
    relay = OutboxRelay(RelayConfig(database_url=url, bootstrap=bench.infra.bootstrap, topic=topic,
                                    source=SERVICE.registry().source, batch_size=2_000))
    conn = await asyncpg.connect(dsn)
    try:
        published = await relay.drain(conn)
    finally:
        await relay.close()
        await conn.close()
    assert published == events, published
    return {"url": url, "topic": topic, "events": events, "by_type": {"submitted": events}}


async def consumer(bench: Any, topic: str, events: int) -> dict[str, Any]:
    from relay_replay import consumer_limit

    result, split = await consumer_limit(bench.infra.bootstrap, topic, events)
    return {"records_per_s": result.value, **split}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lifecycle", action="store_true",
                        help="replay requests' lifecycles (submit, accept, start, ...), not submits only")
    parser.add_argument("--compare", help="git ref whose replay runs beside this tree's")
    parser.add_argument("--profile", help="cProfile this tree's last replay into this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.url, args.bootstrap, args.namespace, args.topic, args.schema,
                                           args.profile))))
        return
    from common import Bench, code_trees, in_turn, infra_up, run_child

    load_before = os.getloadavg()
    limit: list[dict[str, Any]] = []
    with code_trees(args.compare) as trees:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        bench = Bench(infra_up())
        try:
            info = asyncio.run(fill(bench, args.events, args.lifecycle))
            base = ["--url", info["url"], "--bootstrap", bench.infra.bootstrap, "--namespace", bench.namespace,
                    "--topic", info["topic"]]
            for round_ in range(args.rounds):
                for i, (name, paths) in enumerate(in_turn(trees, round_)):
                    last = round_ == args.rounds - 1 and name == "this tree"
                    extra = ["--profile", args.profile] if args.profile and last else []
                    runs[name].append(run_child(__file__, paths,
                                                [*base, "--schema", f"read_model_cmp{round_}_{i}", *extra]))
                    print(f"  round {round_ + 1} {name}: {runs[name][-1]}", flush=True)
                limit.append(asyncio.run(consumer(bench, info["topic"], info["events"])))
        finally:
            asyncio.run(bench.cleanup())
    best = {name: max(rs, key=lambda x: x["events_per_s"]) for name, rs in runs.items()}
    leanest = {name: min(rs, key=lambda x: x["cpu_us_per_event"]) for name, rs in runs.items()}
    cheapest = {name: x["cpu_us_per_event"] for name, x in leanest.items()}
    kafka = max(x["records_per_s"] for x in limit)
    print(f"projection replay, {info['events']:,} events {info['by_type']}")
    print(f"projection replay, {info['events']:,} events   events/s  / aiokafka consumer  CPU us/event (replay+pg)"
          + ("  rate/ref  CPU/ref" if args.compare else ""))
    ratios: dict[str, Any] = {}
    for name, b in best.items():
        ratios[name] = {"to_aiokafka_consumer": round(b["events_per_s"] / kafka, 3)}
        line = (f"  {name:<26}{b['events_per_s']:>9,}{ratios[name]['to_aiokafka_consumer']:>20.3f}"
                f"{cheapest[name]:>14.1f} ({leanest[name]['replay_cpu_us_per_event']}"
                f"+{leanest[name]['postgres_cpu_us_per_event']})")
        if args.compare:
            ratios[name]["rate_to_ref"] = round(b["events_per_s"] / best[args.compare]["events_per_s"], 3)
            ratios[name]["cpu_to_ref"] = round(cheapest[name] / cheapest[args.compare], 3)
            line += f"{ratios[name]['rate_to_ref']:>10.2f}{ratios[name]['cpu_to_ref']:>9.2f}"
        print(line)
    print(f"  aiokafka consumer (same run)  {kafka:>9,.0f} records/s")
    result = {"name": "replay_compare", "events": info["events"], "by_type": info["by_type"], "best": best, "cpu_us_per_event_min": cheapest,
              "runs": runs, "aiokafka_consumer": limit, "ratios": ratios, "loadavg_before": load_before,
              "loadavg_after": os.getloadavg(), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(f"load average before {load_before}, after {result['loadavg_after']}")
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "replay_compare.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

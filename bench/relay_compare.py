"""Relay catch-up beside Kafka's ProducerPerformance and beside another git ref's relay, in one run.

Each relay run is a child process with that tree's code first on the import path: a fresh database (this
tree's migrations), a `--events` backlog written with one INSERT ... SELECT (bench/relay_replay.fill_backlog),
then `OutboxRelay.drain` timed until the outbox is empty, into its own 6-partition topic. Trees alternate
`--rounds` times; ProducerPerformance (acks=all, linger 5 ms, 600 B records) runs between them. Prints
events/s, the ratio to ProducerPerformance and to the ref, the load average; writes
bench/results/relay_compare.json.

    .venv/bin/python bench/relay_compare.py --compare HEAD~1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


async def child(events: int, batch: int) -> dict[str, Any]:
    import asyncpg
    from common import Bench, infra_up
    from relay_replay import fill_backlog

    from opsat.common.outbox import OutboxRelay, RelayConfig
    from opsat.intake.service import SERVICE

    bench = Bench(infra_up())
    try:
        db = await bench.create_database("relaycmp")
        dsn, url = bench.infra.dsn(db), bench.infra.sqlalchemy_url(db)
        topic = f"{bench.namespace}.relaycmp.events"
        await bench.create_topics({topic: SERVICE.partitions})
        await fill_backlog(dsn, events)
        relay = OutboxRelay(RelayConfig(database_url=url, bootstrap=bench.infra.bootstrap, topic=topic,
                                        source=SERVICE.registry().source, batch_size=batch))
        conn = await asyncpg.connect(dsn)
        try:
            await relay._ensure_producer()  # noqa: SLF001 - connected before the clock starts
            cpu0, t0 = time.process_time(), time.perf_counter()
            published = await relay.drain(conn)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        finally:
            await relay.close()
            await conn.close()
        return {"events_per_s": round(published / wall), "published": published, "seconds": round(wall, 2),
                "relay_cpu_us_per_event": round(cpu / published * 1e6, 1)}
    finally:
        await bench.cleanup()


async def producer_limit(records: int) -> dict[str, Any]:
    import limits
    from common import Bench, infra_up

    bench = Bench(infra_up())
    try:
        topic = f"{bench.namespace}.perf.events"
        await bench.create_topics({topic: 6})
        result = await asyncio.to_thread(limits.producer_performance, bench, topic, records)
        return {"records_per_s": result.value, **result.details}
    finally:
        await bench.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--compare", help="git ref whose relay runs beside this tree's")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.events, args.batch))))
        return
    from common import code_trees, in_turn, run_child

    load_before = os.getloadavg()
    limit: list[dict[str, Any]] = []
    with code_trees(args.compare) as trees:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for round_ in range(args.rounds):
            for name, paths in in_turn(trees, round_):
                runs[name].append(run_child(__file__, paths, ["--events", str(args.events), "--batch", str(args.batch)]))
            limit.append(asyncio.run(producer_limit(max(args.events, 100_000))))
    best = {name: max(rs, key=lambda x: x["events_per_s"]) for name, rs in runs.items()}
    producer = max(x["records_per_s"] for x in limit)
    print(f"relay catch-up, {args.events:,} events, batch {args.batch}   events/s  / ProducerPerformance"
          + ("  / ref" if args.compare else ""))
    ratios: dict[str, Any] = {}
    for name, b in best.items():
        ratios[name] = {"to_producer_performance": round(b["events_per_s"] / producer, 3)}
        line = f"  {name:<44}{b['events_per_s']:>9,}{ratios[name]['to_producer_performance']:>22.3f}"
        if args.compare:
            ratios[name]["to_ref"] = round(b["events_per_s"] / best[args.compare]["events_per_s"], 3)
            line += f"{ratios[name]['to_ref']:>8.2f}"
        print(line + f"   ({b['relay_cpu_us_per_event']} us CPU/event in the relay)")
    print(f"  Kafka ProducerPerformance (same run)          {producer:>9,.0f} records/s")
    result = {"name": "relay_compare", "events": args.events, "batch": args.batch, "best": best, "runs": runs,
              "producer_performance": limit, "ratios": ratios, "loadavg_before": load_before,
              "loadavg_after": os.getloadavg(), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(f"load average before {load_before}, after {result['loadavg_after']}")
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "relay_compare.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

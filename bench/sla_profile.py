"""The SLA worker's consumers one at a time, in this process under cProfile, for digging by hand.

An intake topic of `--requests` life cycles (as `sla_clocks.py` fills it) is driven through `ClockDriver`;
the clock events it wrote are published by the SLA outbox relay; then the `sla_targets` projection and
`ClockTimers` consume them. Prints CPU ms per event of each stage and its profile's top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import time
from typing import Any

from common import Bench, infra_up, r


async def _stage(name: str, work: Any, top: int, sort: str, dump: str | None) -> dict[str, Any]:
    profile = cProfile.Profile() if top else None
    cpu0, t = time.process_time(), time.perf_counter()
    if profile:
        profile.enable()
    stats = await work
    if profile:
        profile.disable()
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu0
    n = stats.applied
    print(f"== {name}: {n} events, {r(wall)} s wall, {r(cpu / n * 1000 if n else 0)} ms CPU per event"
          + (" (profiled)" if profile else ""))
    if profile:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(sort).print_stats(top)
        if dump:
            profile.dump_stats(f"{dump}.{name}.prof")
        print(out.getvalue())
    return {"events": n, "cpu_ms_per_event": r(cpu / n * 1000 if n else None)}


async def main(requests: int, top: int, sort: str, dump: str | None) -> None:
    from sla_clocks import fill_intake_topic

    from opsat.common.consumer import ProjectionRunner
    from opsat.common.db import create_engine
    from opsat.common.eventstore import EventStore
    from opsat.common.outbox import OutboxRelay, RelayConfig
    from opsat.sla_monitor.service import SERVICE as SLA
    from opsat.sla_monitor.settings import SlaSettings

    bench = Bench(infra_up())
    try:
        db = await bench.create_database("slaprof", service="sla")
        namespace = f"{bench.namespace}prof"
        await fill_intake_topic(bench, requests, f"{namespace}.intake.events", "slaprofintake")
        url = bench.infra.sqlalchemy_url(db)
        settings = SlaSettings(database_url=url, kafka_bootstrap=bench.infra.bootstrap, topic_namespace=namespace)
        await bench.create_topics(SLA.topics(settings))
        engine = create_engine(url, pool_size=4)
        try:
            def runner(name: str) -> ProjectionRunner:
                consumer = SLA.consumer(settings, name)
                if name == "clock_driver":
                    consumer.handler = SLA.command_handler(settings, EventStore(engine, SLA.registry(),
                                                                                settings.idempotency_retention_s))
                return ProjectionRunner(engine, consumer, SLA.runner_config(settings, name, until_end=True))

            await _stage("clock_driver", runner("clock_driver").run(asyncio.Event()), top, sort, dump)
            relay = OutboxRelay(RelayConfig(database_url=url, bootstrap=bench.infra.bootstrap,
                                            topic=SLA.topic(settings), source=SLA.registry().source,
                                            batch_size=10_000))
            async with engine.connect() as conn:
                raw = await conn.get_raw_connection()
                try:
                    published = await relay.drain(raw.driver_connection)
                finally:
                    await relay._reset_producer()  # noqa: SLF001
            print(f"relayed {published} clock events")
            for name in ("sla_targets", "clock_timers"):
                await _stage(name, runner(name).run(asyncio.Event()), top, sort, dump)
        finally:
            await engine.dispose()
    finally:
        await bench.cleanup()


def compare(ref: str, requests: int, rounds: int) -> None:
    """This tree and `ref` alternately, each stage's CPU per event without the profiler, in child processes with
    that tree's packages first on the path; with the load average beside each round."""
    import json
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    from common import code_trees

    line = re.compile(r"^== (\S+): (\d+) events, ([\d.]+) s wall, ([\d.]+) ms CPU per event")
    figures: dict[str, list[dict[str, Any]]] = {}
    with code_trees(ref) as trees:
        for _ in range(rounds):
            for name, paths in trees.items():
                load = os.getloadavg()[0]
                done = subprocess.run([sys.executable, str(Path(__file__)), "--requests", str(requests), "--top", "0"],
                                      env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)}, capture_output=True,
                                      text=True, check=True)
                stages = {m[1]: {"events": int(m[2]), "wall_s": float(m[3]), "cpu_ms_per_event": float(m[4])}
                          for m in map(line.match, done.stdout.splitlines()) if m}
                figures.setdefault(name, []).append({"load_avg_1m": round(load, 2), **stages})
                print(name, json.dumps(figures[name][-1]), flush=True)
    best = {name: {stage: min(run[stage]["cpu_ms_per_event"] for run in runs) for stage in runs[0] if stage != "load_avg_1m"}
            for name, runs in figures.items()}
    print("lowest CPU ms per event of each stage:", json.dumps(best))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", metavar="REF", help="this tree and REF alternately, CPU per event only")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--top", type=int, default=30, help="0: no profiler, CPU per event only")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--dump", help="also write <dump>.<stage>.prof")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare, args.requests, args.rounds)
    else:
        asyncio.run(main(args.requests, args.top, args.sort, args.dump))

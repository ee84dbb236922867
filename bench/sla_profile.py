"""The SLA worker's consumers one at a time, in this process under cProfile, for digging by hand.

An intake topic of `--requests` life cycles (as `sla_clocks.py` fills it) is driven through `ClockDriver`;
the clock events it wrote are published by the SLA outbox relay; then the `sla_targets` projection and
`ClockTimers` consume them. Prints CPU ms per event of each stage and its profile's top functions, and beside
it what the stage cost PostgreSQL: the cluster's CPU, and per event the rows inserted, updated (HOT or not) and
deleted in each table, index and heap blocks touched, and WAL written (`pg_stat_user_tables`,
`pg_statio_user_tables`, `pg_stat_wal` deltas; each stage runs on its own engine, disposed before the after
snapshot so that its backends have flushed their statistics). `--open-clocks N` first copies a started clock
N times (as `sla_clocks.py` does), so that the tables and indexes have the bench's size.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import time
from typing import Any

from common import Bench, cpu_seconds, infra_up, r
from sla_clocks import pg_delta, pg_snapshot


def _print_pg(name: str, delta: dict[str, Any]) -> None:
    print(f"-- {name} PostgreSQL: {delta['pg_cpu_ms_per_event']} ms CPU per event, WAL per event {delta['wal_per_event']}")
    for table, d in sorted(delta["tables_per_event"].items()):
        print(f"   {table}: {d}")


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
    print(f"== {name}: {n} events, {r(wall)} s wall, {r(cpu / n * 1000 if n else 0, 3)} ms CPU per event"
          + (" (profiled)" if profile else ""))
    if profile:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(sort).print_stats(top)
        if dump:
            profile.dump_stats(f"{dump}.{name}.prof")
        print(out.getvalue())
    return {"events": n, "cpu_ms_per_event": r(cpu / n * 1000 if n else None)}


# The statements one poll of `--requests` replayed requests runs, each for `n` of its streams (ids taken from the
# store after the stages): what EXPLAIN (ANALYZE, BUFFERS) says of them, in a transaction rolled back.
_EXPLAINED = {
    "driver: load the batch's clock streams": (
        "select position, stream_id, stream_type, version, event_id, event_type, schema_version, data, metadata,"
        " recorded_at from events where stream_id = any($1::text[]) order by stream_id, version"),
    "driver: policies and calendars": (
        "select position, stream_id, stream_type, version, event_id, event_type, schema_version, data, metadata,"
        " recorded_at from events where stream_type in ('sla_policy', 'sla_calendar') order by stream_id, version"),
    "driver: stall deadlines (schedule_many)": (
        "insert into deadlines (kind, stream_id, due_at, payload) select 'sla_stall', s, now() + interval '9 hours',"
        " '{}'::jsonb from unnest($1::text[]) as t(s) on conflict (kind, stream_id) do update set"
        " due_at = excluded.due_at, payload = excluded.payload, attempts = 0, last_error = null"),
    "timers: check deadlines cancelled (cancel_many)": (
        "delete from deadlines where kind = 'sla_check' and stream_id = any($1::text[])"),
    "sla_targets: the batch's rows": "select * from read_model.sla_targets where request_id = any($1::text[])",
    "sla_targets: rows written back (upsert of the same rows)": (
        "insert into read_model.sla_targets select * from read_model.sla_targets where request_id = any($1::text[])"
        " on conflict (request_id, target) do update set status = excluded.status, due_at = excluded.due_at,"
        " team = excluded.team, updated_at = excluded.updated_at"),
    "request_work: the batch's rows": "select * from read_model.request_work where request_id = any($1::text[])",
    "sla_targets runner: the batch's stream versions (the kit's lookup)": (
        "select source, stream_id, version from read_model.stream_versions where projection = 'sla_targets'"
        " and source = any(array['intake', 'sla']) and stream_id = any($1::text[])"),
}


async def explain(dsn: str, n: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("analyze")  # as autovacuum would have by then: plans on the tables' real sizes
        ids = [row["stream_id"] for row in await conn.fetch(
            "select distinct stream_id from events where stream_type = 'sla_clock' and stream_id not like 'open-%'"
            " and stream_id <> 'template' limit $1", n)]
        for name, sql in _EXPLAINED.items():
            tr = conn.transaction()
            await tr.start()
            try:
                args = [ids] if "$1" in sql else []
                plan = await conn.fetch(f"explain (analyze, buffers, timing off, summary on) {sql}", *args)
            finally:
                await tr.rollback()
            print(f"-- explain: {name} ({len(ids)} streams)")
            for row in plan:
                line = row[0]
                print("   ", line if len(line) <= 160 else line[:150] + " ...")  # not the ids listed
    finally:
        await conn.close()


async def main(requests: int, top: int, sort: str, dump: str | None, open_clocks: int, explain_n: int = 0) -> None:
    from sla_clocks import fill_intake_topic, load_open_clocks

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
        dsn = bench.infra.dsn(db)
        if open_clocks:
            engine = create_engine(url, pool_size=4)
            try:
                store = EventStore(engine, SLA.registry(), settings.idempotency_retention_s)
                print("open clocks:", await load_open_clocks(SLA.command_handler(settings, store), store, engine, dsn,
                                                             open_clocks))
            finally:
                await engine.dispose()

        async def stage(name: str) -> None:
            engine = create_engine(url, pool_size=4)
            try:
                consumer = SLA.consumer(settings, name)
                if name == "clock_driver":
                    consumer.handler = SLA.command_handler(settings, EventStore(engine, SLA.registry(),
                                                                                settings.idempotency_retention_s))
                runner = ProjectionRunner(engine, consumer, SLA.runner_config(settings, name, until_end=True))
                before = await pg_snapshot(dsn)
                n = (await _stage(name, runner.run(asyncio.Event()), top, sort, dump))["events"]
            finally:
                await engine.dispose()
            _print_pg(name, pg_delta(before, await pg_snapshot(dsn), n))

        await stage("clock_driver")
        relay = OutboxRelay(RelayConfig(database_url=url, bootstrap=bench.infra.bootstrap,
                                        topic=SLA.topic(settings), source=SLA.registry().source,
                                        batch_size=10_000))
        import asyncpg

        before = await pg_snapshot(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            published = await relay.drain(conn)
        finally:
            await relay._reset_producer()  # noqa: SLF001
            await conn.close()
        print(f"relayed {published} clock events")
        _print_pg("relay", pg_delta(before, await pg_snapshot(dsn), published))
        for name in ("sla_targets", "clock_timers"):
            await stage(name)
        if explain_n:
            await explain(dsn, explain_n)
    finally:
        await bench.cleanup()


async def worker(requests: int, top: int, sort: str, dump: str | None, open_clocks: int) -> None:
    """All of the worker's loops (`SERVICE.build_loops`, as `opsat-sla worker` runs them) in this process, from
    the start of the intake topic until the driver has applied it and the followers have applied every clock
    event it caused: CPU per clock update of this process and of PostgreSQL, and where this process spent it."""
    import asyncpg
    from sla_clocks import fill_intake_topic, load_open_clocks

    from opsat.common.db import create_engine
    from opsat.common.eventstore import EventStore
    from opsat.sla_monitor.service import SERVICE as SLA
    from opsat.sla_monitor.settings import SlaSettings

    bench = Bench(infra_up())
    try:
        db = await bench.create_database("slawork", service="sla")
        namespace = f"{bench.namespace}work"
        fill = await fill_intake_topic(bench, requests, f"{namespace}.intake.events", "slaworkintake")
        url, dsn = bench.infra.sqlalchemy_url(db), bench.infra.dsn(db)
        settings = SlaSettings(database_url=url, kafka_bootstrap=bench.infra.bootstrap, topic_namespace=namespace)
        await bench.create_topics(SLA.topics(settings))
        if open_clocks:
            engine = create_engine(url, pool_size=4)
            try:
                store = EventStore(engine, SLA.registry(), settings.idempotency_retention_s)
                print("open clocks:", await load_open_clocks(SLA.command_handler(settings, store), store, engine, dsn,
                                                             open_clocks))
            finally:
                await engine.dispose()
        watcher = await asyncpg.connect(dsn)
        # Only once a second, on one connection whose backend CPU is left out of PostgreSQL's figure.
        watcher_pid = await watcher.fetchval("select pg_backend_pid()")
        done_sql = ("select (select count(*) from reactions.processed_events where projection = 'clock_driver'),"
                    " (select count(*) from reactions.processed_events where projection = 'clock_timers'),"
                    " (select count(*) from read_model.processed_events where projection = 'sla_targets'),"
                    " (select count(*) from events where stream_type = 'sla_clock' and metadata ? 'causation_id'"
                    "  and metadata->>'causation_id' is not null and stream_id not like 'open-%')")
        before = await pg_snapshot(dsn)
        watcher_cpu0 = cpu_seconds([watcher_pid])
        stop = asyncio.Event()
        profile = cProfile.Profile() if top else None
        cpu0, t = time.process_time(), time.perf_counter()
        if profile:
            profile.enable()
        tasks = [asyncio.create_task(loop(stop), name=name) for name, loop in SLA.build_loops(settings)]
        while True:
            await asyncio.sleep(1.0)
            driver, timers, targets, caused = await watcher.fetchrow(done_sql)
            if driver >= fill["events"] and timers >= caused and targets >= fill["events"] + caused:
                break
            if time.perf_counter() - t > 600:
                raise RuntimeError(f"not caught up: {driver}, {timers}, {targets}, {caused}")
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if profile:
            profile.disable()
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu0
        watcher_cpu = cpu_seconds([watcher_pid]) - watcher_cpu0
        await watcher.close()
        await asyncio.sleep(1.0)
        delta = pg_delta(before, await pg_snapshot(dsn), caused)
        pg_ms = r(delta["pg_cpu_ms_per_event"] - watcher_cpu / caused * 1000, 3)
        print(f"== worker: {caused} clock updates, {r(wall)} s wall, {r(cpu / caused * 1000, 3)} ms CPU per update,"
              f" PostgreSQL {pg_ms} ms CPU per update (watcher's {r(watcher_cpu, 2)} s left out)")
        _print_pg("worker", delta)
        if profile:
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats(sort).print_stats(top)
            if dump:
                profile.dump_stats(f"{dump}.worker.prof")
            print(out.getvalue())
    finally:
        await bench.cleanup()


def compare(ref: str, requests: int, rounds: int, open_clocks: int, whole_worker: bool = False) -> None:
    """This tree and `ref` alternately, each stage's CPU per event without the profiler, in child processes with
    that tree's packages first on the path; with the load average beside each round."""
    import json
    import os
    import re
    import statistics
    import subprocess
    import sys
    from pathlib import Path

    from common import code_trees, in_turn

    line = re.compile(r"^== (\S+): (\d+) events, ([\d.]+) s wall, ([\d.]+) ms CPU per event")
    pg_line = re.compile(r"^-- (\S+) PostgreSQL: ([\d.]+) ms CPU per event")
    worker_line = re.compile(r"^== worker: (\d+) clock updates, ([\d.]+) s wall, ([\d.]+) ms CPU per update,"
                             r" PostgreSQL ([\d.-]+) ms CPU per update")
    figures: dict[str, list[dict[str, Any]]] = {}
    with code_trees(ref) as trees:
        for round_ in range(rounds):
            for name, paths in in_turn(trees, round_):
                load = os.getloadavg()[0]
                done = subprocess.run([sys.executable, str(Path(__file__)), "--requests", str(requests), "--top", "0",
                                       "--open-clocks", str(open_clocks), *(["--worker"] if whole_worker else [])],
                                      env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)}, capture_output=True,
                                      text=True, check=True)
                stages = {m[1]: {"events": int(m[2]), "wall_s": float(m[3]), "cpu_ms_per_event": float(m[4])}
                          for m in map(line.match, done.stdout.splitlines()) if m}
                for m in filter(None, map(pg_line.match, done.stdout.splitlines())):
                    if m[1] != "worker":  # its figure (watcher's CPU left out) is on the worker line
                        stages.setdefault(m[1], {})["pg_cpu_ms_per_event"] = float(m[2])
                for m in filter(None, map(worker_line.match, done.stdout.splitlines())):
                    stages["worker"] = {"events": int(m[1]), "wall_s": float(m[2]), "cpu_ms_per_event": float(m[3]),
                                        "pg_cpu_ms_per_event": float(m[4])}
                figures.setdefault(name, []).append({"load_avg_1m": round(load, 2), **stages})
                print(name, json.dumps(figures[name][-1]), flush=True)
    best = {name: {f"{stage}.{k}": min(run[stage][k] for run in runs) for stage in runs[0] if stage != "load_avg_1m"
                   for k in ("cpu_ms_per_event", "pg_cpu_ms_per_event") if k in runs[0][stage]}
            for name, runs in figures.items()}
    print("lowest CPU ms per event of each stage (process, PostgreSQL):", json.dumps(best))
    median = {name: {f"{stage}.{k}": statistics.median(run[stage][k] for run in runs) for stage in runs[0]
                     if stage != "load_avg_1m" for k in ("cpu_ms_per_event", "pg_cpu_ms_per_event") if k in runs[0][stage]}
              for name, runs in figures.items()}
    print("median CPU ms per event of each stage (process, PostgreSQL):", json.dumps(median))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", metavar="REF", help="this tree and REF alternately, CPU per event only")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--top", type=int, default=30, help="0: no profiler, CPU per event only")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--dump", help="also write <dump>.<stage>.prof")
    parser.add_argument("--explain", type=int, default=0, metavar="N",
                        help="then EXPLAIN (ANALYZE, BUFFERS) a poll's statements for N streams")
    parser.add_argument("--worker", action="store_true", help="all of the worker's loops in this process")
    parser.add_argument("--open-clocks", type=int, default=0, help="copies of a started clock in the store first")
    args = parser.parse_args()
    if args.worker and not args.compare:
        asyncio.run(worker(args.requests, args.top, args.sort, args.dump, args.open_clocks))
    elif args.compare:
        compare(args.compare, args.requests, args.rounds, args.open_clocks, args.worker)
    else:
        asyncio.run(main(args.requests, args.top, args.sort, args.dump, args.open_clocks, args.explain))

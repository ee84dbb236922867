"""A year of operation: does intake stay as fast with 1,000,000 requests and 10,000,000 events stored?

Two intake databases side by side in one run: `empty` (migrated, nothing in it) and `year` (the same, loaded
with `--scale` × 1,000,000 requests over the past 365 days, ten events per request in the event store, ten
timeline rows and one `requests` row each in the read model; one request in 50 still open, and so in the
working set `open_requests`). The load is
server-side (INSERT ... SELECT generate_series, in chunks of 100,000 requests), then ANALYZE.

Then, on both, alternating: submits/s over HTTP (one uvicorn worker, 48 in flight, the lean load
generator), and the latency of the read paths a front end calls, one after another over HTTP (staff
token): the newest page of the list, a filtered list (team + status), the next page by cursor, a team's
queue, the backlog statistics, and one old request's timeline; plus `EventStore.load` of an old stream in
this process. Targets: submits/s on the year within 10 % of the empty store; each query's p99 ≤ 50 ms.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
from typing import Any

import asyncpg
import httpx
from common import BIN, ROOT, Bench, Result, infra_up, r, summary_ms, token, uuid7_sql

REQUESTS_PER_CHUNK = 100_000
EVENTS_PER_REQUEST = 10
EVENT_TYPES = ["submitted", "accepted", "assigned", "started", "replied", "note_added", "time_logged", "replied",
               "resolved", "closed"]
OPEN = ["submitted", "accepted", "in_progress", "awaiting_customer", "reopened"]

# One chunk: requests [$1, $2] of $3 spread over the year before now; streams `y<number>`.
_LOAD = """
with r as (
  select g, 'y' || lpad(g::text, 8, '0') as id,
         now() - interval '365 days' + (g::float8 / $3) * interval '365 days' as at,
         'org-' || (g % 100) as org, 'team-' || (g % 20) as team, 'eng-' || (g % 200) as eng,
         (array['P1','P2','P3','P4'])[1 + g % 4] as priority,
         case when g % 50 = 0 then (array['{open}'])[1 + (g / 50) % 5] else 'closed' end as status
  from generate_series($1::int, $2::int) g
), requests as (
  insert into read_model.requests (id, organisation_id, requester_id, kind, channel, title, description, service,
    customer_tier, impact, urgency, priority, priority_overridden, status, team, assignee, watchers, approval,
    reopen_count, time_spent_minutes, submitted_at, accepted_at, resolved_at, closed_at, updated_at, version)
  select id, org, 'user-' || (g % 5000), 'incident', 'portal', 'request ' || g, 'a year of operation', 'mail',
    'standard', 2, 2, priority, false, status, team, eng, '[]', 'not_required', 0, 30, at, at + interval '10 minutes',
    case when status = 'closed' then at + interval '8 hours' end, case when status = 'closed' then at + interval '1 day' end,
    at + interval '1 day', {n}
  from r
), timeline as (
  insert into read_model.timeline (request_id, sequence, event_id, event_type, at, actor, visibility, summary, data)
  select id, v, md5(id || v), 'opsat.intake.request.' || (array['{types}'])[v], at + v * interval '1 hour', eng,
    'public', 'step ' || v, '{{}}'
  from r, generate_series(1, {n}) v
)
insert into events (stream_id, stream_type, version, event_id, event_type, schema_version, data, metadata)
select id, 'request', v, {event_id}, 'opsat.intake.request.' || (array['{types}'])[v], 1,
  jsonb_build_object('request_id', id, 'at', at + v * interval '1 hour', 'by', eng, 'team', team,
                     'note', 'a year of operation, event ' || v), $4::jsonb
from r, generate_series(1, {n}) v
""".format(open="','".join(OPEN), types="','".join(EVENT_TYPES), n=EVENTS_PER_REQUEST,
           event_id=uuid7_sql("at + v * interval '1 hour'"))


def _open_requests_catch_up() -> str:
    from sqlalchemy.dialects import postgresql

    from opsat.intake.projections.requests import copy_open_requests

    return str(copy_open_requests().compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


async def load_year(dsn: str, requests: int) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    t0 = time.perf_counter()
    try:
        meta = json.dumps({"actor": "bench", "tenant": "org-0", "correlation_id": "scale"})
        for first in range(1, requests + 1, REQUESTS_PER_CHUNK):
            last = min(first + REQUESTS_PER_CHUNK - 1, requests)
            await conn.execute(_LOAD, first, last, requests, meta)
            print(f"   loaded {last:,}/{requests:,} requests ({time.perf_counter() - t0:.0f} s)", flush=True)
        await conn.execute(_open_requests_catch_up())  # what intake's migration 0006 does to a loaded store
        await conn.execute("analyze")
        sizes = await conn.fetchrow("select (select count(*) from events) as events, "
                                    "pg_size_pretty(pg_database_size(current_database())) as size")
    finally:
        await conn.close()
    return {"requests": requests, "events": sizes["events"], "database_size": sizes["size"],
            "load_s": r(time.perf_counter() - t0, 1)}


async def read_paths(url: str, dsn: str, database_url: str, samples: int) -> dict[str, Any]:
    """p50/p99 (ms) of each read path, `samples` sequential calls each."""
    headers = {"Authorization": f"Bearer {token('manager', 'bench-staff', 'ops')}"}
    conn = await asyncpg.connect(dsn)
    try:
        old = [row[0] for row in await conn.fetch(
            "select id from read_model.requests order by submitted_at limit 200")] or ["missing"]
    finally:
        await conn.close()
    rnd = random.Random(3)
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        first = (await client.get("/api/v1/requests", params={"limit": 50})).json()
        cursor = first.get("next_cursor")
        paths = {
            "list_newest": lambda: ("/api/v1/requests", {"limit": 50}),
            "list_team_status": lambda: ("/api/v1/requests", {"limit": 50, "team": f"team-{rnd.randrange(20)}",
                                                              "status": "closed"}),
            "list_next_page": lambda: ("/api/v1/requests", {"limit": 50, **({"cursor": cursor} if cursor else {})}),
            "team_queue": lambda: (f"/api/v1/queues/team-{rnd.randrange(20)}", {"limit": 50}),
            "backlog_stats": lambda: ("/api/v1/stats/backlog", {}),
            "old_timeline": lambda: (f"/api/v1/requests/{rnd.choice(old)}/timeline", {}),
        }
        for name, make in paths.items():
            times = []
            for _ in range(samples):
                path, params = make()
                t = time.perf_counter()
                got = await client.get(path, params=params)
                times.append(time.perf_counter() - t)
                if got.status_code not in (200, 404):
                    raise RuntimeError(f"{name}: {got.status_code} {got.text[:300]}")
            out[name] = summary_ms(times)
    out["stream_load"] = await _stream_loads(database_url, old, samples)
    return out


async def _stream_loads(database_url: str, streams: list[str], samples: int) -> dict[str, Any]:
    from opsat.common.db import create_engine
    from opsat.common.eventstore import EventStore
    from opsat.intake.service import SERVICE

    engine = create_engine(database_url, pool_size=1)
    store = EventStore(engine, SERVICE.registry())
    times = []
    try:
        for i in range(samples):
            t = time.perf_counter()
            try:
                await store.load(streams[i % len(streams)])
            except Exception:  # noqa: BLE001 - the year's synthetic data does not decode; only the read is timed
                pass
            times.append(time.perf_counter() - t)
    finally:
        await engine.dispose()
    return summary_ms(times)


async def _reused(bench: Bench, database: str) -> dict[str, Any]:
    """A year loaded by an earlier run, kept: migrated to this tree's head (as an upgrade would), then counted."""
    out = subprocess.run([str(BIN / "opsat-intake"), "migrate"], env=bench.service_env(database), cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"opsat-intake migrate failed:\n{out.stdout}\n{out.stderr}")
    conn = await asyncpg.connect(bench.infra.dsn(database))
    try:
        row = await conn.fetchrow("select (select count(*) from read_model.requests) as requests,"
                                  " (select count(*) from events) as events,"
                                  " pg_size_pretty(pg_database_size(current_database())) as size")
    finally:
        await conn.close()
    return {"requests": row["requests"], "events": row["events"], "database_size": row["size"], "reused": database}


async def run(bench: Bench, scale: float = 1.0, seconds: float = 10.0, samples: int = 200,
              rounds: int = 2, reuse: str | None = None) -> list[Result]:
    import submit_throughput

    dbs = {"empty": await bench.create_database("scale_empty")}
    if reuse:
        dbs["year"] = reuse  # not this run's: kept at the end
        loaded = await _reused(bench, reuse)
        requests = loaded["requests"]
    else:
        requests = max(REQUESTS_PER_CHUNK // 10, int(1_000_000 * scale))
        dbs["year"] = await bench.create_database("scale_year")
        print(f"   loading a year: {requests:,} requests, {requests * EVENTS_PER_REQUEST:,} events", flush=True)
        loaded = await load_year(bench.infra.dsn(dbs["year"]), requests)
    figures: dict[str, dict[str, Any]] = {name: {"submits_per_s": [], "reads": None} for name in dbs}
    staff = {"OPSAT_PROVIDER_ORGANISATIONS": '["ops"]'}
    for round_ in range(rounds):  # alternating, so that the machine's other load falls on both alike
        for name, db in dbs.items():
            api, url = await bench.start_api(db, 1, f"scale-{name}-{round_}", **staff)
            try:
                if round_ == 0:
                    figures[name]["reads"] = await read_paths(url, bench.infra.dsn(db),
                                                              bench.infra.sqlalchemy_url(db), samples)
                got = await submit_throughput.load(bench, url, api.pids, db, concurrency=48, seconds=seconds)
                figures[name]["submits_per_s"].append(got["submits_per_s"])
                print(f"   {name}: {got['submits_per_s']} submits/s", flush=True)
            finally:
                bench.stop(api)
    empty_rate = max(figures["empty"]["submits_per_s"])
    year_rate = max(figures["year"]["submits_per_s"])
    results = [Result.measured("scale_submit_ratio_year_to_empty", r(year_rate / empty_rate, 3), "ratio",
                               (">=", 0.9), {"loaded": loaded, "empty_submits_per_s": figures["empty"]["submits_per_s"],
                                             "year_submits_per_s": figures["year"]["submits_per_s"]})]
    reads_year, reads_empty = figures["year"]["reads"], figures["empty"]["reads"]
    for path, year in reads_year.items():
        results.append(Result.measured(f"scale_{path}_p99", year["p99_ms"], "ms", ("<=", 50.0),
                                       {"year": year, "empty": reads_empty[path], "requests": requests}))
    return results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="× 1,000,000 requests (default 1: a year)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per submit run (default 10)")
    parser.add_argument("--reuse", metavar="DATABASE",
                        help="measure on a year loaded before (a database of this PostgreSQL), skipping the load")
    args = parser.parse_args()

    async def main() -> None:
        bench = Bench(infra_up())
        try:
            for result in await run(bench, scale=args.scale, seconds=args.seconds, reuse=args.reuse):
                result.write()
                print(result.name, result.value, result.unit, result.target, json.dumps(result.details))
        finally:
            await bench.cleanup()

    asyncio.run(main())

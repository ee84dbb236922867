"""(1) Command throughput over HTTP: POST /api/v1/requests against a real uvicorn intake API.

Each variant gets its own freshly migrated database and a uvicorn process
(`uvicorn opsat.intake.service:create_app --factory --workers N`, settings from OPSAT_*). Load comes
from bench/loadgen.py processes (closed loop, `concurrency` requests in flight, warm-up excluded).
The main figure uses the lean raw-socket client; one extra run with httpx.AsyncClient shows what
the client itself costs (its CPU per request), since on 2 cores the client competes with the server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from typing import Any

import asyncpg
from common import BENCH, Bench, CpuMeter, Result, kafka_pid, postgres_cpu_seconds, r, summary_ms, token


async def _sessions(bench: Bench, db: str) -> int:
    conn = await asyncpg.connect(bench.infra.admin_url)
    try:
        return await conn.fetchval("select sessions from pg_stat_database where datname = $1", db) or 0
    finally:
        await conn.close()


async def load(bench: Bench, url: str, api_pids: Any, db: str, *, concurrency: int, seconds: float,
               warmup: float = 1.5, client: str = "raw", procs: int = 1) -> dict[str, Any]:
    tok = token()
    start_at = time.time() + 1.0  # the generators connect first, then start together
    cmd = [sys.executable, str(BENCH / "loadgen.py"), "--url", url, "--token", tok, "--duration", str(seconds),
           "--warmup", str(warmup), "--start-at", str(start_at), "--client", client]
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    results = [bench.logs / f"loadgen-{uuid.uuid4().hex[:8]}.json" for _ in shares]
    gens = [subprocess.Popen(cmd + ["--concurrency", str(c), "--out", str(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE) for c, path in zip(shares, results, strict=True)]
    meter = CpuMeter({"api": api_pids, "=postgres": postgres_cpu_seconds,
                      "kafka": lambda: [p for p in [kafka_pid()] if p]})
    s0 = await _sessions(bench, db)
    await asyncio.sleep(max(0.0, start_at + warmup - time.time()))
    meter.start()
    outs = []
    for g, path in zip(gens, results, strict=True):
        _, stderr = await asyncio.to_thread(g.communicate, timeout=seconds + warmup + 60)
        if g.returncode:
            raise RuntimeError(f"loadgen failed: {stderr.decode()[-2000:]}")
        outs.append(json.loads(path.read_text()))
    cpu = meter.stop({"load_generator": sum(o["cpu_s"] for o in outs)})
    sessions = await _sessions(bench, db) - s0
    ok = sum(o["ok"] for o in outs)
    errors: dict[str, int] = {}
    for o in outs:
        for k, v in o["errors"].items():
            errors[k] = errors.get(k, 0) + v
    lat = [x for o in outs for x in o["latencies_s"]]
    rate = ok / seconds
    client_cpu = sum(o["cpu_s"] for o in outs)
    return {
        "submits_per_s": r(rate, 1), "ok": ok, "errors": errors, "latency": summary_ms(lat),
        "concurrency": concurrency, "seconds": seconds, "warmup_s": warmup, "client": client,
        "load_processes": procs,
        "client_cpu_ms_per_request": r(client_cpu / ok * 1000, 3) if ok else None,
        "api_cpu_ms_per_request": r(cpu["cores_busy"]["api"] * cpu["wall_s"] / ok * 1000, 3) if ok else None,
        "new_postgres_sessions_during_run": sessions, "cpu": cpu,
    }


async def run(bench: Bench, *, workers: tuple[int, ...] = (1, 2), concurrency: int = 48, seconds: float = 10.0,
              httpx_seconds: float = 6.0, whatif_seconds: float = 6.0) -> tuple[list[Result], dict[str, Any]]:
    """Returns the results and a diagnosis: the load generator check (raw vs httpx client) and, when
    the target is missed, a what-if with the connection pool sized to the requests in flight
    (OPSAT_DATABASE_POOL_SIZE, a setting, so the product code is the same)."""
    results = []
    client_check: dict[str, Any] = {}
    diagnosis: dict[str, Any] = {}
    for n in workers:
        db = await bench.create_database(f"submit{n}w")
        api, url = await bench.start_api(db, n, f"submit{n}w")
        try:
            main = await load(bench, url, api.pids, db, concurrency=concurrency, seconds=seconds)
            if n == workers[0] and httpx_seconds:
                check = await load(bench, url, api.pids, db, concurrency=concurrency, seconds=httpx_seconds,
                                   client="httpx")
                client_check = {
                    "raw_client": {k: main[k] for k in ("submits_per_s", "client_cpu_ms_per_request")}
                    | {"client_cores_busy": main["cpu"]["cores_busy"].get("load_generator")},
                    "httpx_client": {k: check[k] for k in ("submits_per_s", "client_cpu_ms_per_request", "latency")}
                    | {"client_cores_busy": check["cpu"]["cores_busy"].get("load_generator")},
                }
            main["rss"] = bench.record_rss("api", api)
            main["uvicorn"] = f"uvicorn opsat.intake.service:create_app --factory --workers {n} (uvloop, httptools)"
        finally:
            bench.stop(api)
        results.append(Result.measured(f"submit_throughput_{n}worker", main["submits_per_s"], "submits/s",
                                       (">=", 1000 if n == 1 else 1500), main))
    diagnosis["load_generator_check"] = client_check
    if whatif_seconds and not all(x.met for x in results):
        # One process with a pool as large as the requests in flight: no overflow connection is ever
        # opened and closed again (with 2 workers the kernel splits the connections unevenly).
        n = workers[0]
        pool = concurrency
        db = await bench.create_database(f"submit{n}wpool")
        api, url = await bench.start_api(db, n, f"submit{n}wpool", OPSAT_DATABASE_POOL_SIZE=str(pool))
        try:
            alt = await load(bench, url, api.pids, db, concurrency=concurrency, seconds=whatif_seconds)
            bench.record_rss("api", api)
        finally:
            bench.stop(api)
        base = next(x for x in results if x.name == f"submit_throughput_{n}worker").details
        diagnosis["pool_whatif"] = {
            "setting": f"OPSAT_DATABASE_POOL_SIZE={pool} (default 32, no overflow), {n} workers",
            "default": {k: base[k] for k in ("submits_per_s", "new_postgres_sessions_during_run",
                                             "api_cpu_ms_per_request")} | {"p99_ms": base["latency"]["p99_ms"],
                                                                           "cpu": base["cpu"]},
            "pool_sized": {k: alt[k] for k in ("submits_per_s", "new_postgres_sessions_during_run",
                                               "api_cpu_ms_per_request")} | {"p99_ms": alt["latency"]["p99_ms"],
                                                                             "cpu": alt["cpu"]},
        }
    return results, diagnosis

"""EventStore.append with and without group commit, side by side in one run, on a throwaway database of the
local PostgreSQL (deploy/local/infra.sh): `--concurrency` appends in flight from one process (as one API
process's requests are), each a new stream of one event (a submit's append). Also with the outbox's
`pg_notify` trigger dropped, to see what the relay's wake-up costs each way. Reports appends/s, this
process's CPU per append and PostgreSQL's (its backends' CPU from /proc), alternating the variants
`--rounds` times; writes bench/results/group_commit.json.

    .venv/bin/python bench/group_commit.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from common import postgres_cpu_seconds  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def admin_dsn() -> str:
    env = {}
    for line in (ROOT / ".local" / "env").read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    return env["OPSAT_DATABASE_ADMIN_URL"]


async def drive(store: Any, event: Any, meta: Any, concurrency: int, seconds: float) -> dict[str, Any]:
    n = 0
    end = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal n
        while time.perf_counter() < end:
            await store.append(str(uuid.uuid4()), "request", 0, [event], meta)
            n += 1

    await asyncio.gather(*(store.append(str(uuid.uuid4()), "request", 0, [event], meta) for _ in range(concurrency)))
    pg0, cpu0, t0 = postgres_cpu_seconds(), time.process_time(), time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    wall, cpu, pg = time.perf_counter() - t0, time.process_time() - cpu0, postgres_cpu_seconds() - pg0
    return {"appends_per_s": round(n / wall, 1), "process_cpu_ms_per_append": round(cpu / n * 1000, 4),
            "postgres_cpu_ms_per_append": round(pg / n * 1000, 4), "appends": n}


async def main(args: argparse.Namespace) -> None:
    from datetime import UTC, datetime

    from opsat.common.db import create_engine
    from opsat.common.domain import Actor, CommandContext, Role
    from opsat.common.envelope import EventMetadata
    from opsat.common.eventstore import EventStore
    from opsat.common.testing.helpers import platform_database
    from opsat.intake.domain import aggregate
    from opsat.intake.domain.commands import SubmitRequest
    from opsat.intake.service import SERVICE
    from opsat.intake.settings import IntakeSettings

    base = admin_dsn()
    name = f"opsat_bench_gc_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(base)
    await admin.execute(f"create database {name}")
    dsn = base.rsplit("/", 1)[0] + "/" + name
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        await platform_database(url)
        settings = IntakeSettings(database_url=url)
        actor = Actor(id="bench-user", organisation="bench-org", roles=frozenset({Role.requester}))
        handler = SERVICE.command_handler(settings, None)  # type: ignore[arg-type]
        command = SubmitRequest(request_id="x", kind="incident", channel="portal", title="Mail is down",
                                description="nobody at the branch can reach the mail server " * 4, impact=2,
                                urgency=2, requester_id=actor.id, organisation_id=actor.organisation, service="mail")
        [event] = aggregate.decide(None, command, CommandContext(actor=actor, now=datetime.now(UTC)),
                                   handler.aggregate.policies.default)
        meta = EventMetadata(actor=actor.id, tenant=actor.organisation, correlation_id=str(uuid.uuid4()))
        engine = create_engine(url, pool_size=args.pool)
        variants = {"one transaction per append": False, "group commit": True}
        runs: dict[str, list[dict[str, Any]]] = {}
        load_before = os.getloadavg()
        try:
            for notify in (True, False):
                if not notify:
                    conn = await asyncpg.connect(dsn)
                    await conn.execute("drop trigger outbox_notify on outbox")
                    await conn.close()
                for _ in range(args.rounds):
                    for label, group in variants.items():
                        key = f"{label}, {'with' if notify else 'without'} the pg_notify trigger"
                        store = EventStore(engine, SERVICE.registry(), group_commit=group)
                        runs.setdefault(key, []).append(await drive(store, event, meta, args.concurrency,
                                                                    args.seconds))
        finally:
            await engine.dispose()
    finally:
        await admin.execute(f"drop database if exists {name} with (force)")
        await admin.close()
    best = {k: max(v, key=lambda x: x["appends_per_s"]) for k, v in runs.items()}
    ref = best["one transaction per append, with the pg_notify trigger"]["appends_per_s"]
    print(f"{'EventStore.append, ' + str(args.concurrency) + ' in flight':<62}{'appends/s':>11}{'ratio':>7}"
          f"{'proc CPU ms':>13}{'PG CPU ms':>11}")
    for k, v in best.items():
        print(f"{k:<62}{v['appends_per_s']:>11,.0f}{v['appends_per_s'] / ref:>7.2f}"
              f"{v['process_cpu_ms_per_append']:>13.3f}{v['postgres_cpu_ms_per_append']:>11.3f}")
    result = {"name": "group_commit", "concurrency": args.concurrency, "seconds": args.seconds, "pool": args.pool,
              "rounds": args.rounds, "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
              "best": best, "runs": runs, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(f"load average before {load_before}, after {result['loadavg_after']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "group_commit.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pool", type=int, default=10, help="connections (the API's default pool)")
    import uvloop

    uvloop.install()
    asyncio.run(main(parser.parse_args()))

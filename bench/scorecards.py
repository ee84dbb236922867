"""Appraisal: scorecard calculation for 500 engineers × 90 days of facts (target ≤ 5 s).

Loads a quarter of synthetic facts with COPY into a throwaway database migrated by `opsat-appraisal
migrate` (every engineer resolves 3 requests a day; 10 % of targets late, 5 % of requests reopened; 30 % of
requests get an answered survey, 1 % a complaint; each team one risk a week), then
times `AppraisalQueries.calculate` for the quarter: the totals summed by PostgreSQL, and the scoring in
Python, split. Beside it, the limit: the same facts rows fetched raw with asyncpg (no summing, no scoring).
"""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from common import BIN, ROOT, Bench, Result, r

from opsat.appraisal.domain.incentives import DEFAULT_INCENTIVES
from opsat.appraisal.domain.periods import Period, period_end
from opsat.appraisal.domain.scorecards import DEFAULT_GRADES
from opsat.appraisal.projections import queries as q
from opsat.common.db import create_engine

QUARTER = date(2026, 7, 1)
FACTS_SQL = """select c.request_id, c.engineer, c.team, c.resolved_at, c.resolved_event_id, c.reopen_event_ids,
  a.event_id, a.on_time, b.event_id, b.on_time from read_model.request_credits c
  left join read_model.sla_outcomes a on a.request_id = c.request_id and a.target = 'response'
  left join read_model.sla_outcomes b on b.request_id = c.request_id and b.target = 'resolution'
  where c.resolved_at >= $1 and c.resolved_at < $2"""


def synthetic(engineers: int, days: int, per_day: int, seed: int = 7) -> tuple[list[tuple], list[tuple], list[tuple]]:
    rnd = random.Random(seed)
    credits, outcomes, named = [], [], []
    for e in range(engineers):
        for d in range(days):
            for k in range(per_day):
                rid = str(uuid.UUID(int=rnd.getrandbits(128)))
                at = datetime(2026, 7, 1, 2, tzinfo=UTC) + timedelta(days=d, hours=k * 2)
                reopens = [str(uuid.uuid4())] if rnd.random() < 0.05 else []
                credits.append((rid, "ops", "incident", "P3", f"svc-{e % 20}", f"team-{e // 10}", f"eng-{e:03d}",
                                at, str(uuid.uuid4()), reopens))
                for target in ("response", "resolution"):
                    outcomes.append((rid, target, int(rnd.random() >= 0.1), at, str(uuid.uuid4())))
                if rnd.random() < 0.3:  # an answered survey naming the engineer and team
                    named.append((str(uuid.uuid4()), "csat", at + timedelta(hours=1), rid, f"eng-{e:03d}",
                                  f"team-{e // 10}", None, Decimal(rnd.randrange(20, 101))))
                if rnd.random() < 0.01:  # a complaint naming only the request
                    named.append((str(uuid.uuid4()), "complaint", at + timedelta(hours=2), rid, None, None, "ops", None))
    for t in range(engineers // 10):
        for week in range(days // 7):
            named.append((str(uuid.uuid4()), "risk", datetime(2026, 7, 1, 3, tzinfo=UTC) + timedelta(weeks=week),
                          None, None, f"team-{t}", None, None))
    return credits, outcomes, named


async def run(bench: Bench, engineers: int = 500, days: int = 90, per_day: int = 3) -> list[Result]:
    db = await bench.create_database("appraisal", migrate=False)
    out = subprocess.run([str(BIN / "opsat-appraisal"), "migrate"], env=bench.service_env(db), cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"opsat-appraisal migrate failed:\n{out.stdout}\n{out.stderr}")
    credits, outcomes, named = synthetic(engineers, days, per_day)
    conn = await asyncpg.connect(bench.infra.dsn(db))
    try:
        t0 = time.perf_counter()
        await conn.copy_records_to_table("request_credits", schema_name="read_model", records=credits, columns=[
            "request_id", "organisation_id", "kind", "priority", "service", "team", "engineer", "resolved_at",
            "resolved_event_id", "reopen_event_ids"])
        await conn.copy_records_to_table("sla_outcomes", schema_name="read_model", records=outcomes,
                                         columns=["request_id", "target", "on_time", "met_at", "event_id"])
        await conn.copy_records_to_table("subject_facts", schema_name="read_model", records=named, columns=[
            "event_id", "fact", "at", "request_id", "engineer", "team", "organisation_id", "score"])
        await conn.execute("analyze")
        load_s = time.perf_counter() - t0
        since = datetime(2026, 6, 30, 16, tzinfo=UTC)  # the quarter's first day, Asia/Shanghai
        until = since + timedelta(days=92)
        t0 = time.perf_counter()
        raw = await conn.fetch(FACTS_SQL, since, until)
        raw += await conn.fetch("select * from read_model.subject_facts where at >= $1 and at < $2", since, until)
        raw_s = time.perf_counter() - t0
    finally:
        await conn.close()

    engine = create_engine(bench.infra.sqlalchemy_url(db))
    queries = q.AppraisalQueries(engine)
    state = Period("2026-q3", "ops", "quarterly", QUARTER, period_end("quarterly", QUARTER), 1, DEFAULT_GRADES,
                   DEFAULT_INCENTIVES, 7)
    try:
        await queries.calculate(state)  # warm: catalogue load, statement cache
        split: dict[str, float] = {}
        totals_query = queries.totals

        async def timed_totals(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            found = await totals_query(*args, **kwargs)
            split["totals_query_s"] = time.perf_counter() - t
            return found

        queries.totals = timed_totals  # type: ignore[method-assign]
        t0 = time.perf_counter()
        cards = await queries.calculate(state)
        total_s = time.perf_counter() - t0
    finally:
        await engine.dispose()
    split["scoring_s"] = total_s - split["totals_query_s"]
    details = {"engineers": engineers, "days": days, "requests": len(credits), "feedback_and_risk_facts": len(named),
               "rows_raw": len(raw),
               "scorecards": len(cards), "load_copy_s": r(load_s), **{k: r(v, 3) for k, v in split.items()},
               "raw_fetch_s": r(raw_s, 3), "ratio_to_raw_fetch": r(total_s / raw_s, 1) if raw_s else None}
    return [
        Result.measured("appraisal_scorecards_500x90", r(total_s, 3), "s", ("<=", 5.0), details),
        Result.measured("limit_appraisal_facts_raw_fetch", r(raw_s, 3), "s", None,
                        {"rows": len(raw), "what": "the same facts rows fetched with asyncpg, no scoring"}),
    ]


if __name__ == "__main__":
    import asyncio

    from common import infra_up

    async def main() -> None:
        bench = Bench(infra_up())
        try:
            for result in await run(bench):
                result.write()
                print(result.name, result.value, result.unit, result.target, result.details)
        finally:
            await bench.cleanup()

    asyncio.run(main())

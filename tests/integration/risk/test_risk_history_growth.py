"""A counting rule's history query reads the observations inside its window, however long the service has run:
a year of a team's breaches must not make each batch read all of them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from risk_harness import Risk
from sqlalchemy import text

from opsat.common.db import create_engine
from opsat.risk.app.reactions import SignalDriver
from opsat.risk.domain.signals import Observation, SignalRule
from opsat.risk.service import SERVICE as RISK

YEAR = 20_000  # breaches of one team, spread over 365 days


async def test_a_counting_rule_reads_its_window_not_the_teams_whole_history(run_service):
    risk: Risk = await run_service(RISK, harness=Risk)
    engine = create_engine(risk.settings.database_url)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(
                "insert into reactions.signal_observations (event_id, source, at, team, service)"
                " select 'ev-' || n, 'sla_breach', cast(:now as timestamptz) - n * interval '365 days' / cast(:year as int),"
                " 'network', 'mail'"
                " from generate_series(1, :year) n"), {"now": now, "year": YEAR})
            await conn.execute(text("analyze reactions.signal_observations"))
        rule = SignalRule(rule_id="sla-breaches-team", version=1, source="sla_breach", subject="team", threshold=3)
        batch = [Observation(event_id="ev-new", source="sla_breach", at=now, team="network", service="mail")]
        async with engine.begin() as conn:
            before = await _reads(conn)
            found = await SignalDriver("unused").count_history(conn, {rule: batch})
            after = await _reads(conn)
    finally:
        await engine.dispose()
    in_window = round(YEAR * 7 / 365)
    assert abs(len(found["sla_breach"]) - in_window) <= 2  # the last 7 days' breaches
    assert after[0] == before[0], "read by a sequential scan"
    assert after[1] - before[1] <= in_window + 10, "the team's whole history fetched"


async def _reads(conn: Any) -> tuple[int, int]:
    row = (await conn.execute(text(
        "select seq_tup_read, coalesce(idx_tup_fetch, 0) from pg_stat_xact_user_tables"
        " where schemaname = 'reactions' and relname = 'signal_observations'"))).one()
    return row[0], row[1]

"""A rule's history query reads what the rule can see, however long the service has run: a counting rule the
observations inside its window, a last-N rule a subject's newest responses. A year of a team's breaches or
answers must not make each batch read all of them."""

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


async def test_a_last_n_rule_reads_each_subjects_newest_responses_not_its_whole_history(run_service):
    risk: Risk = await run_service(RISK, harness=Risk)
    engine = create_engine(risk.settings.database_url)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as conn:  # a year of answers for two teams, two kinds each, one every ~26 min
            await conn.execute(text(
                "insert into reactions.signal_observations (event_id, source, at, team, kind, value)"
                " select 'ans-' || n, 'feedback_response',"
                " cast(:now as timestamptz) - (n / 2) * interval '365 days' / cast(:year as int),"
                " case when n % 4 < 2 then 'network' else 'desk' end,"
                " case when n % 3 = 0 then 'incident' else 'service_request' end, n % 100"
                " from generate_series(1, :year) n"), {"now": now, "year": YEAR})
            await conn.execute(text("analyze reactions.signal_observations"))
            every = [tuple(r) for r in await conn.execute(text(
                "select event_id, team, kind, at from reactions.signal_observations"))]
        batch = [Observation(event_id="ans-new", source="feedback_response", at=now, team=team, kind="incident",
                             value=50.0) for team in ("network", "desk")]
        for per_kind in (False, True):
            rule = SignalRule(rule_id="csat-team", version=1, source="feedback_response", subject="team",
                              mode="mean_below", threshold=70, window_seconds=None, last_n=20, per_kind=per_kind)
            async with engine.begin() as conn:
                before = await _reads(conn)
                found = await SignalDriver("unused").history(conn, rule, batch)
                after = await _reads(conn)
            # By hand: per team (and kind), the newest 4 × last_n, ties broken by event id.
            groups: dict[tuple, list] = {}
            for event_id, team, kind, at in every:
                if team in ("network", "desk") and (not per_kind or kind == "incident"):
                    groups.setdefault((team, kind if per_kind else None), []).append((at, event_id))
            expected = {e for rows in groups.values() for _, e in sorted(rows, reverse=True)[:4 * 20]}
            assert {o.event_id for o in found} == expected and len(found) == len(expected), per_kind
            assert after[0] == before[0], ("read by a sequential scan", per_kind)
            # Per kind, the index (source, team, at) skips the other kind's answers in between: about 3 per hit.
            assert after[1] - before[1] <= (4 if per_kind else 1) * len(expected) + 20, \
                ("the teams' whole history fetched", after[1] - before[1], per_kind)
    finally:
        await engine.dispose()


async def _reads(conn: Any) -> tuple[int, int]:
    row = (await conn.execute(text(
        "select seq_tup_read, coalesce(idx_tup_fetch, 0) from pg_stat_xact_user_tables"
        " where schemaname = 'reactions' and relname = 'signal_observations'"))).one()
    return row[0], row[1]

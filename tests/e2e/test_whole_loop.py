"""The whole loop, over HTTP, with all five services running as processes on real Kafka and PostgreSQL:
requests handled by three engineers of two teams (some on time, three of them breaching their SLA, one
reopened) → surveys emailed on closure and answered through the emailed links (one low) → a complaint → a
risk raised by the breaches → an appraisal period calculated and published. Every scorecard number equals
the value calculated here by hand from what the test did; the drill-down of a number lists exactly the
events that produced it; an appeal amends one score; the read models rebuilt from the topics are equal.

Two SLA policies on the 24×7 calendar: P2 with targets of an hour and a day (always met here), P3 with 1 s and
2 s (always breached: the test waits for each breach before acting).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from opsat.appraisal.projections.facts import FactsProjection
from opsat.appraisal.projections.periods import PeriodsProjection
from opsat.appraisal.service import SERVICE as APPRAISAL
from opsat.common.db import create_engine
from opsat.common.projections import rebuild, snapshot
from opsat.common.testing.helpers import rows, scalar
from opsat.common.testing.service import ServiceHarness, settings_for_tests
from opsat.feedback.service import SERVICE as FEEDBACK
from opsat.intake.service import SERVICE as INTAKE
from opsat.risk.service import SERVICE as RISK
from opsat.sla_monitor.service import SERVICE as SLA
from tests.conftest import Intake
from tests.support.feedback_story import Feedback, SmtpSink, eventually, free_port, token_in
from tests.support.processes import running_processes

D = Decimal
# DOMAIN.md's catalogue as this product ships it: (kpi, numerator facts, denominator, measure, target, floor, weight)
CATALOGUE = [("sla_resolution", ["resolved_on_time"], "resolution_measured", "rate", 95, 70, 25),
             ("sla_response", ["responded_on_time"], "response_measured", "rate", 95, 70, 15),
             ("csat", ["csat_score_sum"], "csat_responses", "mean", 90, 60, 25),
             ("first_time_resolution", ["first_time_resolved"], "resolved", "rate", 90, 60, 10),
             ("reopen_rate", ["reopened"], "resolved", "rate", 2, 15, 5),
             ("complaints", ["complaints"], None, "count", 0, 3, 10),
             ("risk_record", ["risks", "emergencies"], None, "count", 0, 3, 10)]
GRADES = [("A", 90), ("B", 80), ("C", 70)]
# Survey answers (ratings of the default template: weights 20/25/20/35 %; score = weighted mean × 20).
HIGH = {"response_speed": 5, "professionalism": 5, "attitude": 5, "resolution": 4}  # 93.0
LOW = {"response_speed": 2, "professionalism": 2, "attitude": 3, "resolution": 1}  # 37.0
TOP = {"response_speed": 5, "professionalism": 5, "attitude": 5, "resolution": 5}  # 100.0


def cents(x: Decimal) -> Decimal:
    return x.quantize(D("0.01"), rounding=ROUND_HALF_UP)


def score_of(ratings: dict[str, int]) -> Decimal:
    weights = {"response_speed": 20, "professionalism": 25, "attitude": 20, "resolution": 35}
    return D(sum(weights[k] * v for k, v in ratings.items())) / 100 * 20


def by_hand(facts: dict[str, Decimal]) -> dict:
    """Each KPI's value and score, the total and the grade, from a subject's facts."""
    lines, weighted, weights = {}, D(0), D(0)
    for kpi, numerator, denominator, measure, target, floor, weight in CATALOGUE:
        top = sum((facts.get(f, D(0)) for f in numerator), D(0))
        below = facts.get(denominator, D(0)) if denominator else None
        if measure != "count" and not below:
            lines[kpi] = None  # does not apply: its weight is shared by the others
            continue
        value = top if measure == "count" else top / below * (100 if measure == "rate" else 1)
        score = cents(min(D(100), max(D(0), (value - floor) / D(target - floor) * 100)))
        lines[kpi] = str(score)
        weighted, weights = weighted + score * weight, weights + weight
    total = cents(weighted / weights)
    grade = next((g for g, at_least in GRADES if total >= at_least), "D")
    return {"scores": lines, "total": str(total), "grade": grade}


@pytest.fixture
async def stack(database_factory, kafka_bootstrap: str, topic_namespace: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    sink = SmtpSink(free_port()).start()
    fast = {"kafka_metadata_max_age_ms": 1000, "database_pool_size": 8}
    extra = {"feedback": {"smtp_port": sink.port, "token_key": secrets.token_hex(32), "mail_poll_interval_s": 0.2}}
    services = {}
    for name, service, harness in (("intake", INTAKE, Intake), ("sla", SLA, ServiceHarness),
                                   ("feedback", FEEDBACK, Feedback), ("risk", RISK, ServiceHarness),
                                   ("appraisal", APPRAISAL, ServiceHarness)):
        settings = settings_for_tests(service, await database_factory(), kafka_bootstrap, topic_namespace,
                                      **fast, **extra.get(name, {}))
        services[name] = (service, settings, harness)
    try:
        async with running_processes(services, tmp_path / "logs") as harnesses:
            yield harnesses, sink
    finally:
        sink.stop()


async def test_the_whole_loop(stack) -> None:  # type: ignore[no-untyped-def]
    s, sink = stack
    intake, sla, feedback, risk, appraisal = (s[n] for n in ("intake", "sla", "feedback", "risk", "appraisal"))
    admin = sla.token("root", "ops", "admin")
    for name, priority, response_s, resolution_s in (("calm", "P2", 3600, 86400), ("rushed", "P3", 1, 2)):
        r = await sla.client.post(f"/api/v1/policies/{name}/define", headers=admin, json={
            "priorities": [priority], "customer_tiers": ["standard"], "calendar_id": "24x7",
            "first_response_seconds": response_s, "resolution_seconds": resolution_s})
        assert r.status_code == 200, r.text
    customers = [f"u{i}" for i in range(1, 7)]
    for customer in customers:  # one customer per request: the sampling rule surveys each of them
        await feedback.register(customer, "acme", f"{customer}@acme.example")
    agent = {who: intake.token(who, "ops", "agent") for who in ("alice", "bob", "carol")}

    async def step(rid: str, path: str, headers: dict, body: dict | None = None) -> None:
        r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=headers)
        assert r.status_code == 200, (path, r.text)

    async def breached(rid: str, target: str) -> bool:
        rows = (await sla.client.get("/api/v1/breaches", headers=agent["bob"])).json()
        return any(b["request_id"] == rid and b["target"] == target for b in rows)

    async def handle(customer: str, who: str, team: str, *, urgency: int = 1, reopen: bool = False,
                     close: bool = True) -> str:
        """Submit (P2 with urgency 1, P3 with 2), accept, start, resolve; for P3 each only after its breach."""
        rid = await intake.submit(intake.token(customer, "acme"), team=team, impact=2, urgency=urgency)
        late = urgency == 2
        if late:
            await eventually(lambda: breached(rid, "response"), what=f"{rid}'s response breach")
        await step(rid, "accept", agent[who], {"team": team, "assignee": who})
        await step(rid, "start", agent[who])
        if late:
            await eventually(lambda: breached(rid, "resolution"), what=f"{rid}'s resolution breach")
        await step(rid, "resolve", agent[who], {"solution": "fixed"})
        if reopen:
            await step(rid, "reject-delivery", intake.token(customer, "acme"), {"reason": "still broken"})
            await step(rid, "start", agent[who])
            await step(rid, "resolve", agent[who], {"solution": "fixed properly"})
        if close:
            await step(rid, "accept-delivery", intake.token(customer, "acme"), {})
        return rid

    r1 = await handle("u1", "alice", "network")
    r2 = await handle("u2", "alice", "network", reopen=True)
    r3 = await handle("u3", "bob", "network", urgency=2)
    r4 = await handle("u4", "bob", "network", urgency=2)
    r5 = await handle("u5", "bob", "network", urgency=2, close=False)
    r6 = await handle("u6", "carol", "desk")

    # One invitation per closed request, answered through the link in the email (u4 never answers).
    async def invited() -> bool:
        return all(sink.to(f"{c}@acme.example") for c in ("u1", "u2", "u3", "u4", "u6"))
    await eventually(invited, timeout=90, what="five invitations")
    assert not sink.to("u5@acme.example")  # resolved, never closed: no survey
    answers = {"u1": (HIGH, 9, None), "u2": (LOW, 3, "it took two attempts"), "u3": (HIGH, 8, None),
               "u6": (TOP, 10, None)}
    for customer, (ratings, nps, comment) in answers.items():
        [mail] = sink.to(f"{customer}@acme.example")
        r = await feedback.answer(token_in(mail), ratings, nps, comment)
        assert r.status_code == 201 and D(str(r.json()["score"])) == score_of(ratings), r.text
    r = await feedback.client.post("/api/v1/complaints", headers=feedback.token("u6", "acme"),
                                   json={"complaint": "the engineer was rude on the phone", "request_id": r6})
    assert r.status_code == 201, r.text

    # The three breaching requests of team network raise one risk (the breach rule; 6 breaches, one risk).
    officer = risk.token("rita", "ops", "risk_officer")

    async def network_risks() -> list | None:
        items = (await risk.client.get("/api/v1/risks", headers=officer)).json()["items"]
        return [x for x in items if (x["subject_type"], x["subject"]) == ("team", "network")] or None
    assert len(await eventually(network_risks, timeout=60, what="the breach risk")) == 1

    # Appraisal has seen every fact: 6 resolutions, 12 SLA outcomes, 4 answers, 1 complaint, 1 risk.
    async def settled() -> bool:
        [row] = await rows(appraisal.settings.database_url, """select
            (select count(*) from read_model.request_credits where resolved_at is not null),
            (select count(*) from read_model.sla_outcomes),
            (select count(*) from read_model.subject_facts where fact = 'csat'),
            (select count(*) from read_model.subject_facts where fact = 'complaint'),
            (select count(*) from read_model.subject_facts where fact = 'risk')""")
        return tuple(row) == (6, 12, 4, 1, 1)
    await eventually(settled, timeout=90, what="appraisal's facts")

    # By hand, from what happened above.
    h, lo, top = score_of(HIGH), score_of(LOW), score_of(TOP)
    assert (h, lo, top) == (D(93), D(37), D(100))
    facts = {
        "alice": dict(handled=2, resolved=2, reopened=1, first_time_resolved=1, response_measured=2,
                      responded_on_time=2, resolution_measured=2, resolved_on_time=2, csat_responses=2,
                      csat_score_sum=h + lo),
        "bob": dict(handled=3, resolved=3, first_time_resolved=3, response_measured=3, resolution_measured=3,
                    csat_responses=1, csat_score_sum=h),
        "carol": dict(handled=1, resolved=1, first_time_resolved=1, response_measured=1, responded_on_time=1,
                      resolution_measured=1, resolved_on_time=1, csat_responses=1, csat_score_sum=top, complaints=1),
        "team:network": dict(handled=5, resolved=5, reopened=1, first_time_resolved=4, response_measured=5,
                             responded_on_time=2, resolution_measured=5, resolved_on_time=2, csat_responses=3,
                             csat_score_sum=h + lo + h, risks=1),
        "team:desk": dict(handled=1, resolved=1, first_time_resolved=1, response_measured=1, responded_on_time=1,
                          resolution_measured=1, resolved_on_time=1, csat_responses=1, csat_score_sum=top,
                          complaints=1),
    }
    facts = {subject: {k: D(v) for k, v in f.items()} for subject, f in facts.items()}

    manager, other_manager = appraisal.token("maria", "ops", "manager"), appraisal.token("mo", "ops", "manager")
    month = datetime.now(ZoneInfo("Asia/Shanghai")).date().replace(day=1)
    period = f"{month:%Y-%m}"
    r = await appraisal.client.post(f"/api/v1/periods/{period}/open", headers=manager,
                                    json={"starts_on": month.isoformat()})
    assert r.status_code == 200, r.text
    r = await appraisal.client.post(f"/api/v1/periods/{period}/calculate", headers=manager)
    assert r.status_code == 200, r.text
    calculated = r.json()["version"]

    async def card(subject: str) -> dict | None:
        got = await appraisal.client.get(f"/api/v1/periods/{period}/scorecards/{subject}", headers=manager)
        return got.json() if got.status_code == 200 else None

    cards = {subject: await eventually(lambda subject=subject: card(subject)) for subject in facts}
    for subject, got in cards.items():
        expected = by_hand(facts[subject])
        assert ({x["kpi_id"]: x["score"] for x in got["lines"]}, got["total"], got["grade"]) == \
            (expected["scores"], expected["total"], expected["grade"]), subject
        for line in got["lines"]:  # every fact behind every number
            assert {k: D(v) for k, v in line["facts"].items()} == \
                {k: facts[subject].get(k, D(0)) for k in line["facts"]}, (subject, line["kpi_id"])
    # The cards above are folded from the period's stream; the ranking is the read model's, read once it has
    # the calculation (an answer not marked stale holds it).
    async def ranked() -> list | None:
        r = await appraisal.client.get(f"/api/v1/periods/{period}/scorecards", headers=manager,
                                       params={"min_version": calculated})
        assert r.status_code == 200, r.text
        return None if r.headers.get("X-Opsat-Stale") else r.json()
    ranking = await eventually(ranked, timeout=90, what="the ranking of the calculation")
    assert {x["subject"] for x in ranking} == {"alice", "bob", "carol"}

    # The drill-down of alice's CSAT lists exactly the two answers about her requests; carol's complaint, the
    # complaint's follow-up; team network's risk record, the risk.
    async def drill(subject: str, kpi: str) -> dict[str, list[str]]:
        r = await appraisal.client.get(f"/api/v1/periods/{period}/scorecards/{subject}/kpis/{kpi}", headers=manager)
        assert r.status_code == 200 and r.json()["matches_card"], r.text
        return {f["fact"]: sorted(f["event_ids"]) for f in r.json()["facts"]}

    answered = await rows(feedback.settings.database_url, "select data->>'request_id' as rid, event_id::text "
                           "from events where event_type = 'opsat.feedback.survey.answered'")
    answer_of = {row["rid"]: row["event_id"] for row in answered}
    assert set(answer_of) == {r1, r2, r3, r6}
    assert await drill("alice", "csat") == {"csat_score_sum": sorted([answer_of[r1], answer_of[r2]]),
                                            "csat_responses": sorted([answer_of[r1], answer_of[r2]])}
    [complaint] = await rows(feedback.settings.database_url, "select event_id::text from events where "
                              "event_type = 'opsat.feedback.followup.opened' and data->>'source' = 'complaint'")
    assert (await drill("carol", "complaints"))["complaints"] == [complaint["event_id"]]
    [identified] = await rows(risk.settings.database_url, "select event_id::text from events where "
                               "event_type = 'opsat.risk.risk.identified'")
    assert (await drill("team:network", "risk_record"))["risks"] == [identified["event_id"]]
    late = await rows(sla.settings.database_url, "select event_id::text from events where event_type = "
                       "'opsat.sla.clock.resolution_met' and stream_id = any($1)", [r3, r4, r5])
    assert await drill("bob", "sla_resolution") == {"resolution_measured": sorted(x[0] for x in late),
                                                    "resolved_on_time": []}

    # Publish; bob appeals his resolution compliance and another manager amends it: his card is re-graded.
    r = await appraisal.client.post(f"/api/v1/periods/{period}/publish", headers=manager)
    assert r.status_code == 200, r.text
    r = await appraisal.client.post(f"/api/v1/periods/{period}/appeals", headers=appraisal.token("bob", "ops", "agent"),
                                    json={"subject": "bob", "kpi_id": "sla_resolution",
                                          "reason": "the 2 s target was a test policy"})
    assert r.status_code == 200, r.text

    async def open_appeals() -> list | None:
        return (await appraisal.client.get("/api/v1/appeals", headers=manager)).json() or None
    [appeal] = await eventually(open_appeals)
    r = await appraisal.client.post(f"/api/v1/periods/{period}/appeals/review", headers=other_manager,
                                    json={"appeal_id": appeal["appeal_id"], "outcome": "amended", "score": 100,
                                          "reason": "agreed: the policy was wrong"})
    assert r.status_code == 200, r.text
    amended = await card("bob")
    line = next(x for x in amended["lines"] if x["kpi_id"] == "sla_resolution")
    assert (line["score"], line["adjusted_from"]) == ("100.00", "0.00")
    scores = {k: D(v) for k, v in by_hand(facts["bob"])["scores"].items() if v is not None}
    scores["sla_resolution"] = D(100)
    weights = {kpi: D(w) for kpi, *_, w in CATALOGUE if kpi in scores}
    total = cents(sum(scores[k] * weights[k] for k in scores) / sum(weights.values()))
    assert amended["total"] == str(total)

    async def appeal_projected() -> bool:
        return await scalar(appraisal.settings.database_url,
                            "select count(*) from read_model.appeals where outcome = 'amended'") == 1
    await eventually(appeal_projected)

    # Rebuilt from the topics, appraisal's read models equal the live ones, table by table.
    engine = create_engine(appraisal.settings.database_url)
    try:
        for projection, tables in (
                (FactsProjection(*map(appraisal.settings.topic, FactsProjection.sources)),
                 ("request_credits", "sla_outcomes", "subject_facts")),
                (PeriodsProjection(appraisal.settings.topic("appraisal")), ("periods", "scorecards", "appeals"))):
            config = APPRAISAL.runner_config(appraisal.settings, projection.name)
            await rebuild(engine, projection, config, f"rm_{projection.name}")
            live = await snapshot(engine, projection)
            rebuilt = await snapshot(engine, projection, f"rm_{projection.name}")
            assert all(live[t] for t in tables)
            assert {t: rebuilt[t] for t in tables} == {t: live[t] for t in tables}, projection.name
    finally:
        await engine.dispose()

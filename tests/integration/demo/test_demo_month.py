"""The demo month on the real stack: all five services (in-process apps, worker loops in this process, real Kafka
and PostgreSQL), the loader driving them through their HTTP APIs with its small size, the survey emails caught by
an SMTP sink. Afterwards every service's main queries answer with real numbers, and a second run with the same
seed creates nothing: no command, and no event in any service's store.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from feedback_story import Feedback, SmtpSink, free_port
from risk_harness import topics_visible

from opsat.appraisal.service import SERVICE as APPRAISAL
from opsat.common.auth import mint_token
from opsat.common.testing.helpers import scalar
from opsat.feedback.service import SERVICE as FEEDBACK
from opsat.intake.service import SERVICE as INTAKE
from opsat.risk.service import SERVICE as RISK
from opsat.sla_monitor.service import SERVICE as SLA
from tools.demo_month import Api, DemoMonth, ListSource, make_plan

SIZE, SEED, PACE = 40, 11, 0.2  # P3 targets 6 s / 18 s: the planned late ones breach within the run


async def event_counts(harnesses) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {h.service.name: await scalar(h.settings.database_url, "select count(*) from events") for h in harnesses}


async def quiet(harnesses, seconds: float = 4.0, timeout: float = 120.0) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """The stores stop growing: every clock's timers have fired, every reaction has run."""
    loop = asyncio.get_running_loop()
    deadline, last, since = loop.time() + timeout, await event_counts(harnesses), loop.time()
    while loop.time() - since < seconds:
        assert loop.time() < deadline, f"the services kept appending events: {last}"
        await asyncio.sleep(0.5)
        now = await event_counts(harnesses)
        if now != last:
            last, since = now, loop.time()
    return last


async def test_the_demo_month_fills_every_service_and_a_second_run_adds_nothing(run_service):
    sink = SmtpSink(free_port()).start()
    try:
        intake = await run_service(INTAKE)
        sla = await run_service(SLA, business_services={"mail": 99.9, "erp": 99.9, "vpn": 99.5, "wifi": 99.5,
                                                        "portal": 99.5})
        feedback = await run_service(FEEDBACK, harness=Feedback, smtp_port=sink.port, mail_poll_interval_s=0.2,
                                     mail_retry_base_s=0.5, mail_retry_max_s=1.0)
        risk = await run_service(RISK)
        appraisal = await run_service(APPRAISAL)
        services = (intake, sla, feedback, risk, appraisal)
        await topics_visible(*services)

        def mint(sub: str, org: str, roles: str) -> str:
            return mint_token(intake.settings, sub=sub, org=org, roles=roles.split(","))

        clients = {h.service.name: h.client for h in services}
        plan = make_plan(SIZE, SEED, PACE)
        async with AsyncExitStack() as workers:
            for harness in services:
                await workers.enter_async_context(harness.worker())
            first_api = Api(clients, mint, concurrency=8)
            report = await DemoMonth(first_api, plan, ListSource(sink.messages), mail_wait_s=60, settle_s=60,
                                     log=lambda _: None).run()
            assert report.failures == [], report.failures
            assert len(report.request_ids) == SIZE

            auditor = first_api.staff("audit-1", "auditor")
            requests = await first_api.get("intake", "/api/v1/requests", auditor, limit=200)
            assert len(requests["items"]) == SIZE
            assert {"closed", "resolved"} <= {r["status"] for r in requests["items"]}
            assert (await first_api.get("intake", "/api/v1/stats/backlog", auditor))["total"] > 0

            compliance = await first_api.get("sla", "/api/v1/compliance", auditor, target="resolution",
                                             group_by="team")
            by_team = {row["team"]: row for row in compliance}
            assert by_team["database"]["decided"] >= 3 and by_team["database"]["compliance_percent"] < 100
            breaches = await first_api.get("sla", "/api/v1/breaches", auditor, team="database")
            assert len(breaches) >= 3
            availability = await first_api.get("sla", "/api/v1/availability", auditor)
            assert any(row["availability_percent"] < 100 for row in availability), availability

            assert sink.messages and report.answered > 0
            csat = await first_api.get("feedback", "/api/v1/satisfaction", auditor)
            assert csat[0]["responses"] == report.answered and 0 < csat[0]["csat_mean"] <= 100
            complaints = await first_api.get("feedback", "/api/v1/follow-ups", auditor, source="complaint")
            assert complaints

            risks = (await first_api.get("risk", "/api/v1/risks", auditor))["items"]
            signal = [r for r in risks if r["source"] == "signal" and r["subject"] == "database"]
            assert signal and signal[0]["score"] > 0, risks

            ranking = await first_api.get("appraisal", f"/api/v1/periods/{report.period_id}/scorecards", auditor)
            assert ranking and all(card["total"] is not None for card in ranking)
            engineers = {r["assignee"] for r in requests["items"] if r["status"] in ("resolved", "closed")}
            assert {card["subject"] for card in ranking} == engineers
            teams = await first_api.get("appraisal", f"/api/v1/periods/{report.period_id}/scorecards", auditor,
                                        kind="team")
            assert {card["subject"] for card in teams} >= {"team:database"}

            before = await quiet(services)
            second_api = Api(clients, mint, concurrency=8)
            again = await DemoMonth(second_api, plan, ListSource(sink.messages), mail_wait_s=10, settle_s=10,
                                    log=lambda _: None).run()
            assert again.failures == [], again.failures
            assert second_api.created == 0, second_api.counts
            assert again.request_ids == report.request_ids
            assert (again.answered, again.already_answered) == (0, report.answered)
            assert await quiet(services) == before
    finally:
        sink.stop()

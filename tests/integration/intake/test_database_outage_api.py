"""PostgreSQL down: the API answers 503 with Retry-After (never 500), and serves again when it is back."""

from __future__ import annotations

from opsat.common.errors import PROBLEM_JSON


async def test_postgres_down_answers_503_then_recovers(intake, local_infra):
    first = await intake.submit(title="before the outage")
    agent = intake.token("agent-1", "ops", "agent")
    await local_infra.stop_postgres_async(immediate=True)
    try:
        body = {"kind": "incident", "title": "during the outage", "impact": 2, "urgency": 2}
        answers = [await intake.client.post("/api/v1/requests", json=body, headers=intake.token()),  # pooled conn
                   await intake.client.post("/api/v1/requests", json=body, headers=intake.token()),  # refused
                   await intake.client.get(f"/api/v1/requests/{first}", headers=agent),
                   await intake.client.post(f"/api/v1/requests/{first}/accept", json={"team": "desk"},
                                            headers=agent)]
        for r in answers:
            assert r.status_code == 503, (r.request.url, r.status_code, r.text)
            assert r.headers["content-type"] == PROBLEM_JSON
            assert int(r.headers["retry-after"]) >= 1
    finally:
        await local_infra.start_postgres_async()
    await intake.submit(title="after the outage")  # the pool replaces its broken connections

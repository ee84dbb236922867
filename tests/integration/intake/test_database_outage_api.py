"""PostgreSQL down: the API answers 503 with Retry-After (never 500), and serves again when it is back."""

from __future__ import annotations

import pytest

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


@pytest.mark.intake_settings(database_pool_size=1, database_pool_timeout_s=0.5)
async def test_a_pool_timeout_answers_503_with_retry_after_then_serves_again(intake):
    rid = await intake.submit(title="before the pool runs dry")
    agent = intake.token("agent-1", "ops", "agent")
    engine = intake.client._transport.app.state.engine  # noqa: SLF001 - the API's own pool
    async with engine.connect() as held:  # the only connection of the pool is in use
        await held.exec_driver_sql("select 1")
        body = {"kind": "incident", "title": "while the pool is dry", "impact": 2, "urgency": 2}
        answers = [await intake.client.post("/api/v1/requests", json=body, headers=intake.token()),
                   await intake.client.get(f"/api/v1/requests/{rid}", headers=agent),
                   await intake.client.get("/api/v1/requests", headers=agent),
                   await intake.client.post(f"/api/v1/requests/{rid}/accept", json={"team": "desk"}, headers=agent)]
    for r in answers:
        assert r.status_code == 503, (r.request.url, r.status_code, r.text)
        assert r.headers["content-type"] == PROBLEM_JSON
        assert int(r.headers["retry-after"]) >= 1
    await intake.submit(title="after the pool is back")

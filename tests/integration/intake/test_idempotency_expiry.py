"""Idempotency keys expire after the retention: a late repeat is a new request, and the worker deletes old keys."""

from __future__ import annotations

import asyncio

from opsat.common.testing.helpers import scalar

SUBMIT = {"kind": "incident", "title": "VPN down", "impact": 2, "urgency": 1}


async def age_keys(intake, hours: int) -> None:
    await scalar(intake.settings.database_url,
                 f"update idempotency_keys set created_at = now() - interval '{hours} hours' returning 1")


async def test_a_key_older_than_the_retention_is_a_new_request(intake):
    headers = {**intake.token(), "Idempotency-Key": "mail-down"}
    first = await intake.client.post("/api/v1/requests", json=SUBMIT, headers=headers)
    assert first.status_code == 201, first.text
    await age_keys(intake, 23)
    again = await intake.client.post("/api/v1/requests", json=SUBMIT, headers=headers)
    assert again.json() == {**first.json(), "replayed": True}  # within 24 h: the first result
    await age_keys(intake, 25)
    late = await intake.client.post("/api/v1/requests", json=SUBMIT, headers=headers)
    assert late.status_code == 201 and late.json()["replayed"] is False, late.text
    assert late.json()["request_id"] != first.json()["request_id"]
    repeat = await intake.client.post("/api/v1/requests", json=SUBMIT, headers=headers)
    assert repeat.json() == {**late.json(), "replayed": True}  # the key now names the new request


async def test_the_worker_deletes_expired_keys(intake):
    for key in ("old", "new"):
        r = await intake.client.post("/api/v1/requests", json={**SUBMIT, "title": key},
                                     headers={**intake.token(), "Idempotency-Key": key})
        assert r.status_code == 201, r.text
    await scalar(intake.settings.database_url, "update idempotency_keys set created_at = now() - interval '25 hours'"
                 " where key = 'old' returning 1")
    async with intake.worker(only=("idempotency-cleanup",)):
        for _ in range(100):
            if await scalar(intake.settings.database_url, "select count(*) from idempotency_keys") == 1:
                break
            await asyncio.sleep(0.1)
    assert await scalar(intake.settings.database_url, "select array_agg(key) from idempotency_keys") == ["new"]

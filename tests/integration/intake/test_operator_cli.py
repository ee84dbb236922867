"""The operator's verbs of `opsat-intake`, run as processes against the real stores: a stream's events, the
topic tailed readably, consumer lag and relay backlog, a development token, and the online rebuild-and-swap
with its progress."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import jwt

from opsat.common.testing.helpers import scalar

BIN = Path(sys.executable).parent


def env_of(intake) -> dict[str, str]:  # type: ignore[no-untyped-def]
    s = intake.settings
    return {**os.environ, "OPSAT_DATABASE_URL": s.database_url, "OPSAT_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "OPSAT_TOPIC_NAMESPACE": s.topic_namespace, "OPSAT_ENVIRONMENT": "test", "OPSAT_AUTH_MODE": "dev",
            "OPSAT_AUTH_DEV_KEY": s.auth_dev_key.get_secret_value(), "OPSAT_PROVIDER_ORGANISATIONS": '["ops"]'}


async def opsat(intake, *args: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return await asyncio.to_thread(subprocess.run, [BIN / "opsat-intake", *args], env=env_of(intake),
                                   capture_output=True, text=True, timeout=120)


async def test_events_tail_lag_and_token(intake):
    agent = intake.token("agent-1", "ops", "agent")
    async with intake.worker():
        rid = await intake.submit()
        r = await intake.client.post(f"/api/v1/requests/{rid}/notes", json={"body": "looked at it"}, headers=agent)
        assert r.status_code == 200, r.text
        await intake.wait_for(rid, 2)

    # The read-only verbs side by side: each is a process of its own, most of its time spent importing.
    shown, missing, tailed, minted = await asyncio.gather(
        opsat(intake, "events", rid), opsat(intake, "events", "no-such-stream"),
        opsat(intake, "tail", "--from-beginning", "--idle-exit", "2"),
        opsat(intake, "token", "--sub", "carol", "--org", "acme", "--roles", "requester"))
    assert shown.returncode == 0, shown.stderr
    events = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [e["version"] for e in events] == [1, 2]
    assert events[0]["type"].startswith("opsat.intake.request.submitted") and events[1]["data"]["body"] == "looked at it"
    assert missing.returncode != 0 and "no stream" in missing.stderr

    assert tailed.returncode == 0, tailed.stderr
    records = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert sum(1 for r in records if r["event"]["subject"] == rid) == 2
    assert all(r["headers"]["type"] == r["event"]["type"] for r in records)

    # Lag: nothing behind while the worker had caught up; the events written while it is stopped show.
    await intake.client.post(f"/api/v1/requests/{rid}/notes", json={"body": "again"}, headers=agent)
    lag = await opsat(intake, "lag")
    assert lag.returncode == 0, lag.stderr
    assert "outbox backlog" in lag.stdout and ": 1 events" in lag.stdout.splitlines()[0], lag.stdout
    assert "consumer requests" in lag.stdout and "lag 0" in lag.stdout, lag.stdout

    assert minted.returncode == 0, minted.stderr
    claims = jwt.decode(minted.stdout.strip(), options={"verify_signature": False})
    assert claims["sub"] == "carol" and claims["org"] == "acme" and claims["roles"] == ["requester"]
    r = await intake.client.get(f"/api/v1/requests/{rid}", headers={"Authorization": f"Bearer {minted.stdout.strip()}"})
    assert r.status_code == 200, r.text  # the API takes it: the request is of the token's organisation


async def test_rebuild_with_swap_shows_progress_and_swaps(intake):
    async with intake.worker():
        rid = await intake.submit()
        await intake.wait_for(rid, 1)
        done = await opsat(intake, "rebuild", "--swap")
    assert done.returncode == 0, done.stderr
    assert "rebuild requests" in done.stderr and "pausing the live projections" in done.stderr
    assert "swapped" in done.stderr.splitlines()[-1]
    db = intake.settings.database_url
    assert await scalar(db, "select count(*) from pg_namespace where nspname like 'read_model_old_%'") == 1
    assert await scalar(db, "select version from read_model.requests where id = $1", rid) == 1

"""Fault injection: load through the API while real faults hit the stack; after each one heals, nothing
acknowledged is lost, nothing is applied twice, the topic holds every event in stream order and every
read-model row equals a rebuild from the topic. No 5xx but 503.

Quick by default (a minute, inside `make test`); `OPSAT_FAULTS=full` (`make test-faults`) runs every fault
at incident-drill length. The numbers of each run go to `.local/faults-report.json` and the terminal.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx
import pytest
from faultkit.checker import Report, check
from faultkit.faults import FULL, FULL_FAULTS, QUICK, QUICK_FAULTS, WORKER, WORKER_ID
from faultkit.load import Load, count_5xx_not_503
from faultkit.stack import Stack

FULL_RUN = os.environ.get("OPSAT_FAULTS", "quick") == "full"


async def recovery(stack: Stack, load: Load, healed_at: float, timeout: float = 120) -> float:
    """From the fault's end until a command sent now is visible in the read model."""
    probe = f"probe-{time.monotonic_ns()}"
    headers = {**load.headers["requester"], "Idempotency-Key": probe}
    body = {"kind": "incident", "title": "probe", "impact": 3, "urgency": 3}
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=stack.api, timeout=5) as http:
        while True:
            try:
                r = await http.post("/api/v1/requests", json=body, headers=headers)
                if r.status_code == 201:
                    rid = r.json()["request_id"]
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API did not take a command after the fault"
            await asyncio.sleep(0.1)
        while True:
            try:
                r = await http.get(f"/api/v1/requests/{rid}", headers=load.headers["requester"])
                if r.status_code == 200:
                    return time.monotonic() - healed_at
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the probe never reached the read model"
            await asyncio.sleep(0.05)


@pytest.fixture
def stack(database_url: str, kafka_bootstrap: str, topic_namespace: str, tmp_path: Path):
    stack = Stack(database_url, kafka_bootstrap, topic_namespace, tmp_path)
    stack.migrate()
    stack.start("api")
    stack.start(WORKER, instance_id=WORKER_ID)
    yield stack
    stack.stop_all()


async def test_nothing_acknowledged_is_lost_or_applied_twice_whatever_fails(stack, local_infra, pytestconfig):
    scale, faults = (FULL, FULL_FAULTS) if FULL_RUN else (QUICK, QUICK_FAULTS)
    warm_s, settle_s, clients = (15, 10, 10) if FULL_RUN else (2, 1, 6)
    load = Load(stack.api, clients=clients)
    reports: list[Report] = []
    try:
        for name, fault in faults:
            acked_before, statuses_before = len(load.acks), load.statuses.copy()
            load.start()
            await asyncio.sleep(warm_s)
            healed_at = await fault(stack, local_infra, scale)
            report = Report(name, recovery_s=round(await recovery(stack, load, healed_at), 2))
            await asyncio.sleep(settle_s)
            await load.stop()
            report.acknowledged = len(load.acks) - acked_before
            answers = load.statuses - statuses_before  # this round's
            report.errors_5xx_not_503 = count_5xx_not_503(answers)
            report.answers_503 = answers.get("503", 0)
            await check(report, load, stack.database_url, stack.kafka_bootstrap, stack.namespace)
            report.converge_s = round(report.converge_s, 2)
            reports.append(report)
    finally:
        _write(pytestconfig.rootpath, reports, load)
    for report in reports:
        assert report.clean, json.dumps(report.as_json(), indent=1)
    assert not load.unknown, load.unknown


def _write(root: Path, reports: list[Report], load: Load) -> None:
    out = root / ".local" / "faults-report.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"mode": "full" if FULL_RUN else "quick", "faults": [r.as_json() for r in reports],
                               "answers": dict(load.statuses), "unknown": load.unknown}, indent=1))
    columns = ("acknowledged", "lost", "duplicates_applied", "read_model_mismatches", "missing_on_topic",
               "out_of_order_on_topic", "errors_5xx_not_503", "answers_503", "recovery_s", "converge_s")
    lines = [f"{'fault':<28}" + "".join(f"{c[:12]:>13}" for c in columns)]
    lines += [f"{r.fault:<28}" + "".join(f"{getattr(r, c)!s:>13}" for c in columns) for r in reports]
    print("\n" + "\n".join(lines) + f"\n(written to {out})")

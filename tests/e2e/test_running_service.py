"""The product as an operator runs it: `opsat-intake migrate`, `api` and `worker` as real processes on
real ports, driven over HTTP, with the events read back by the `opsat-tail` CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from opsat.common.auth import mint_token
from opsat.common.testing.service import TEST_SIGNING_KEY
from opsat.intake.settings import IntakeSettings

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def running_intake(database_url: str, kafka_bootstrap: str, topic_namespace: str, tmp_path: Path
                   ) -> Iterator[tuple[str, str, dict[str, str]]]:
    api_port, worker_port = free_port(), free_port()
    env = {**os.environ, "OPSAT_DATABASE_URL": database_url, "OPSAT_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "OPSAT_TOPIC_NAMESPACE": topic_namespace, "OPSAT_HTTP_PORT": str(api_port),
           "OPSAT_WORKER_PORT": str(worker_port), "OPSAT_RELAY_POLL_INTERVAL_S": "0.2",
           "OPSAT_ENVIRONMENT": "test", "OPSAT_AUTH_MODE": "dev", "OPSAT_AUTH_DEV_KEY": TEST_SIGNING_KEY,
           "OPSAT_PROVIDER_ORGANISATIONS": '["ops"]', "OPSAT_API_METRICS": "true"}
    subprocess.run([BIN / "opsat-intake", "migrate"], env=env, check=True, capture_output=True, timeout=60)
    logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("api", "worker")}
    procs = [subprocess.Popen([BIN / "opsat-intake", name], env=env, stdout=logs[name], stderr=subprocess.STDOUT)
             for name in ("api", "worker")]
    api, worker = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{worker_port}"
    try:
        for url in (api, worker):
            _wait_ready(url + "/readyz", tmp_path)
        yield api, worker, env
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises SIGTERM after its graceful shutdown, so "ended by SIGTERM" is a clean stop too
        for name, proc in zip(("api", "worker"), procs):
            assert proc.wait(timeout=30) in (0, -signal.SIGTERM), (tmp_path / f"{name}.log").read_text()[-2000:]
        for log in logs.values():
            log.close()


def _wait_ready(url: str, logs: Path) -> None:
    deadline = time.monotonic() + 120  # a loaded 2-core machine needs ~20 s just to import the app
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready: " + " | ".join(p.read_text()[-800:] for p in logs.glob("*.log")))


def sample(metrics: httpx.Response, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text exposition (0 when absent: the HELP/TYPE lines alone)."""
    assert metrics.status_code == 200, metrics.text
    for family in text_string_to_metric_families(metrics.text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


async def test_walkthrough_over_real_http_and_kafka(running_intake):
    api, worker, env = running_intake
    settings = IntakeSettings(environment="test", auth_mode="dev", auth_dev_key=TEST_SIGNING_KEY)
    requester = {"Authorization": "Bearer " + mint_token(settings, sub="alice", org="acme", roles=["requester"])}
    agent = {"Authorization": "Bearer " + mint_token(settings, sub="bob", org="ops", roles=["agent"])}
    async with httpx.AsyncClient(base_url=api, timeout=10) as http:
        r = await http.post("/api/v1/requests", headers=requester,
                            json={"kind": "incident", "title": "Printer on fire", "impact": 3, "urgency": 1})
        assert r.status_code == 201 and r.headers["location"].endswith(r.json()["request_id"])
        rid = r.json()["request_id"]
        for path, who, body in (("accept", agent, {"team": "facilities"}), ("start", agent, None),
                                ("resolve", agent, {"solution": "extinguished"}),
                                ("accept-delivery", requester, {})):
            r = await http.post(f"/api/v1/requests/{rid}/{path}", headers=who, json=body)
            assert r.status_code == 200, r.text
        version = r.json()["version"]
        for _ in range(20):  # each call waits up to 2 s for the read model (read-your-writes)
            view = await http.get(f"/api/v1/requests/{rid}", params={"min_version": version}, headers=requester)
            if view.status_code == 200 and "x-opsat-stale" not in view.headers:
                break
        assert view.status_code == 200 and "x-opsat-stale" not in view.headers
        assert view.json()["status"] == "closed" and view.json()["priority"] == "P3"
        timeline = (await http.get(f"/api/v1/requests/{rid}/timeline", headers=requester)).json()
        assert len(timeline) == version
        metrics = (await http.get("/metrics")).text
        assert 'opsat_events_appended_total{service="intake"} 5.0' in metrics
        assert (await http.get("/openapi.json")).json()["info"]["title"] == "opsat intake"
    async with httpx.AsyncClient(base_url=worker, timeout=10) as http:
        # the five events reached the read model through Kafka; the relay counts them just after the ack
        topic = f"{env['OPSAT_TOPIC_NAMESPACE']}.intake.events"
        published = 0.0
        for _ in range(50):
            published = sample(await http.get("/metrics"), "opsat_events_published_total", topic=topic)
            if published >= 5:
                break
            await asyncio.sleep(0.1)
        assert published >= 5, published

    tail = await asyncio.create_subprocess_exec(
        BIN / "opsat-tail", f"{env['OPSAT_TOPIC_NAMESPACE']}.intake.events", "--from-beginning", "--limit", "5",
        "--bootstrap", env["OPSAT_KAFKA_BOOTSTRAP"], stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(tail.communicate(), timeout=30)
    events = [json.loads(line)["event"] for line in out.decode().splitlines()]
    assert [e["type"].split(".")[3] for e in events] == ["submitted", "accepted", "work_started", "resolved", "closed"]
    assert {e["subject"] for e in events} == {rid}

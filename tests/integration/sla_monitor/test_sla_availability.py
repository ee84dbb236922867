"""Availability on the real stack: monitoring (a service account) reports outages of named business services;
bad reports are refused naming the field and store nothing; availability merges overlapping outages and
compares with each service's target."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from opsat.common.testing.helpers import scalar
from opsat.sla_monitor.service import SERVICE as SLA
from tests.integration.sla_monitor.clock_helpers import eventually


async def test_outages_reported_by_monitoring_give_availability_against_the_target(run_service):
    sla = await run_service(SLA, business_services={"mail": 99.9, "erp": 99.5})
    monitor, agent = sla.token("monitoring", "ops", "service"), sla.token("bob", "ops", "agent")
    now = datetime.now(UTC).replace(microsecond=0)
    at = {n: (now - timedelta(minutes=n)).isoformat() for n in (120, 90, 60, 30)}

    async def events() -> int:
        return await scalar(sla.settings.database_url, "select count(*) from events")

    bad = [("o-1/report", {"service": "mail", "severity": "critical", "started_at": at[60], "ended_at": at[120]},
            "ended_at"),
           ("o-1/report", {"service": "telepathy", "severity": "critical", "started_at": at[60]}, "service"),
           ("o-1/report", {"service": "mail", "severity": "apocalyptic", "started_at": at[60]}, "severity"),
           ("o-1/report", {"service": "mail", "severity": "minor", "started_at": 1700000000}, "started_at"),
           ("o-1/report", {"service": "mail", "severity": "minor", "started_at": "2026-11-25T10:00:00"}, "started_at")]
    for path, body, field in bad:
        r = await sla.client.post(f"/api/v1/outages/{path}", headers=monitor, json=body)
        assert r.status_code == 422, (path, body, r.text)
        assert any(e["field"].endswith(field) for e in r.json().get("errors", [])), (path, field, r.json())
    r = await sla.client.post("/api/v1/outages/o-9/end", headers=monitor, json={"ended_at": at[30]})
    assert r.status_code == 404  # no such outage
    r = await sla.client.post("/api/v1/outages/o-1/report", headers=agent,
                              json={"service": "mail", "severity": "minor", "started_at": at[60]})
    assert r.status_code == 403
    assert await events() == 0

    reports = [("o-1/report", {"service": "mail", "severity": "critical", "started_at": at[120], "ended_at": at[60]}),
               ("o-2/report", {"service": "mail", "severity": "major", "started_at": at[90]}),  # overlaps o-1
               ("o-2/end", {"ended_at": at[30]})]
    for path, body in reports:
        r = await sla.client.post(f"/api/v1/outages/{path}", headers=monitor, json=body)
        assert r.status_code == 200, r.text
    r = await sla.client.post("/api/v1/outages/o-2/end", headers=monitor, json={"ended_at": at[30]})
    assert r.status_code == 409

    window = f"since={quote((now - timedelta(hours=10)).isoformat())}&until={quote(now.isoformat())}"

    async def report() -> list[dict] | None:
        r = await sla.client.get(f"/api/v1/availability?{window}", headers=agent)
        assert r.status_code == 200, r.text
        body = r.json()
        return body if body[1]["outages"] == 2 and body[1]["downtime_seconds"] == 5400 else None

    async with sla.worker(only=("relay", "projection")):
        erp, mail = await eventually(report)
    assert (erp["service"], erp["availability_percent"], erp["met"], erp["target_percent"]) == ("erp", 100.0, True, 99.5)
    # 09:00 before now to 30 min before now is down (o-1 and o-2 overlap): 90 of 600 minutes.
    assert (mail["service"], mail["availability_percent"], mail["met"]) == ("mail", 85.0, False)
    r = await sla.client.get("/api/v1/availability?service=telepathy", headers=agent)
    assert r.status_code == 422 and r.json()["errors"][0]["field"].endswith("service")

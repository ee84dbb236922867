"""One calendar change, two services: an administrator adds a 2027 holiday through the SLA monitor's API; a
clock started afterwards skips it, and intake, which follows the calendar from `opsat.sla.events` (no call
between the services), counts its auto-close past it too."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from opsat.common.calendar import business_days_from_working_time
from opsat.common.testing.helpers import scalar
from opsat.common.workhours import WorkCalendar, calendar_from_spec, shipped_calendar
from opsat.sla_monitor.service import SERVICE as SLA
from tests.integration.sla_monitor.clock_helpers import eventually

SHIPPED = shipped_calendar()
TODAY = datetime.now(UTC).astimezone(SHIPPED.zone).date()


def _working(calendar: WorkCalendar, day: date) -> bool:
    return bool(calendar.shifts_on(day))


# The first shipped working day of 2027 at least a week ahead (a later one once 2027 has begun).
HOLIDAY = next(d for d in (max(date(2027, 1, 4), TODAY + timedelta(days=7)) + timedelta(days=n) for n in range(60))
               if _working(SHIPPED, d) and d not in SHIPPED.makeup_workdays)
# Auto-close after as many business days as lie between today and the holiday: on the shipped calendar it
# falls on (or just past) the holiday.
DAYS = sum(_working(SHIPPED, TODAY + timedelta(days=n)) for n in range(1, (HOLIDAY - TODAY).days + 1))


async def topics_ready(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        async def led() -> bool:
            described = await admin.describe_topics(topics)
            return all(t["error_code"] == 0 and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"])
                       for t in described)
        await eventually(led)
    finally:
        await admin.close()


@pytest.mark.intake_settings(intake_policy={"auto_close_business_days": DAYS})
async def test_a_holiday_added_in_sla_moves_new_clocks_and_intakes_auto_close(intake, run_service):
    sla = await run_service(SLA)
    admin, agent = sla.token("root", "ops", "admin"), sla.token("agent-1", "ops", "agent")
    # A resolution target long enough to reach past the holiday on the shipped calendar.
    amount = SHIPPED.between(datetime.now(UTC), datetime.combine(HOLIDAY, time(18), SHIPPED.zone))
    r = await sla.client.post("/api/v1/policies/it-long/define", headers=admin, json={
        "priorities": ["P2"], "customer_tiers": ["standard"], "calendar_id": "cn-default",
        "first_response_seconds": 3600, "resolution_seconds": amount.total_seconds()})
    assert r.status_code == 200, r.text

    async def followed_version() -> int | None:
        return await scalar(intake.settings.database_url, "select version from reactions.followed_calendars"
                                                          " where calendar_id = 'cn-default'")

    async def clock(rid: str) -> dict | None:
        r = await sla.client.get(f"/api/v1/clocks/{rid}", headers=agent)
        return r.json() if r.status_code == 200 else None

    # Each reads the other's topic: both must have partition leaders before either consumer joins its group.
    for service in (sla, intake):
        await service.service.ensure_topics(service.settings)
    await topics_ready(intake.settings.kafka_bootstrap, [s.service.topic(s.settings) for s in (sla, intake)])
    async with sla.worker(), intake.worker():
        r = await sla.client.post("/api/v1/calendars/cn-default/days", headers=admin,
                                  json={"holidays": [HOLIDAY.isoformat()]})
        assert r.status_code == 200, r.text
        assert await eventually(lambda: followed_version()) == 2

        rid = await intake.submit(team="desk")
        started = await eventually(lambda: clock(rid))
        for path, body in (("accept", {}), ("start", None), ("resolve", {"solution": "patched"})):
            r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=agent)
            assert r.status_code == 200, r.text
        await intake.wait_for(rid, 4)
        timeline = (await intake.client.get(f"/api/v1/requests/{rid}/timeline", headers=agent)).json()
        scheduled = await eventually(lambda: scalar(  # its own consumer: it may follow the read model's by a moment
            intake.settings.database_url, "select due_at from deadlines where kind = 'auto_close' and stream_id = $1",
            rid))

    revised = calendar_from_spec({k: v for k, v in (await sla.client.get("/api/v1/calendars/cn-default",
                                                                         headers=agent)).json().items()
                                  if k not in ("calendar_id", "version")})
    assert HOLIDAY in revised.holidays and HOLIDAY not in SHIPPED.holidays

    # The clock: started on version 2, its due time skips the holiday.
    assert started["calendar"] == {"calendar_id": "cn-default", "version": 2}
    clock_start = datetime.fromisoformat(started["started_at"])
    clock_due = datetime.fromisoformat(started["targets"]["resolution"]["due_at"])
    assert clock_due == revised.add(clock_start, amount) > SHIPPED.add(clock_start, amount)
    assert clock_due.astimezone(revised.zone).date() != HOLIDAY

    # Intake: the resolve counted its business days on version 2, and the deadline is set to that time.
    resolved = timeline[-1]["data"]
    resolved_at = datetime.fromisoformat(resolved["at"])
    auto_close = datetime.fromisoformat(resolved["auto_close_due_at"])
    assert auto_close == business_days_from_working_time(revised.to_business_calendar(), resolved_at, DAYS)
    assert auto_close > business_days_from_working_time(SHIPPED.to_business_calendar(), resolved_at, DAYS)
    assert auto_close.astimezone(revised.zone).date() != HOLIDAY
    assert scheduled == auto_close

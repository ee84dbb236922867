"""A clock keeps the calendar version it started with: holidays an administrator adds through the API count
for clocks started afterwards, never for the ones already running."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from opsat.common.workhours import calendar_from_spec
from opsat.sla_monitor.service import SERVICE as SLA
from tests.integration.sla_monitor.clock_helpers import eventually


async def test_holidays_added_through_the_api_apply_to_clocks_started_afterwards(intake, run_service):
    sla = await run_service(SLA)
    admin, agent = sla.token("root", "ops", "admin"), sla.token("bob", "ops", "agent")
    shipped = (await sla.client.get("/api/v1/calendars/cn-default", headers=agent)).json()

    async def clock(rid: str) -> dict | None:
        r = await sla.client.get(f"/api/v1/clocks/{rid}", headers=agent)
        return r.json() if r.status_code == 200 else None

    async with intake.worker(only=("relay",)), sla.worker():
        before = await intake.submit(impact=2, urgency=2)  # P3: 3 business days to resolve
        old = await eventually(lambda: clock(before))
        # The next two weeks' ordinary days become holidays (shipped make-up days stay as they are).
        today = date.today()
        days = [today + timedelta(days=n) for n in range(1, 15)]
        holidays = [d.isoformat() for d in days if d.isoformat() not in shipped["makeup_workdays"]]
        r = await sla.client.post("/api/v1/calendars/cn-default/days", headers=admin, json={"holidays": holidays})
        assert r.status_code == 200, r.text
        after = await intake.submit(impact=2, urgency=2)
        new = await eventually(lambda: clock(after))

    assert old["calendar"] == {"calendar_id": "cn-default", "version": 1}
    assert new["calendar"] == {"calendar_id": "cn-default", "version": 2}
    revised = calendar_from_spec({k: v for k, v in (await sla.client.get("/api/v1/calendars/cn-default",
                                                                         headers=agent)).json().items()
                                  if k not in ("calendar_id", "version")})
    started = datetime.fromisoformat(new["started_at"])
    due = datetime.fromisoformat(new["targets"]["resolution"]["due_at"])
    assert due == revised.add(started, timedelta(hours=27))
    assert not any(due.astimezone(revised.zone).date().isoformat() == h for h in holidays)
    # The clock started before keeps version 1; on version 1 the new clock would have been due earlier.
    first = calendar_from_spec({k: v for k, v in shipped.items() if k not in ("calendar_id", "version")})
    old_started = datetime.fromisoformat(old["started_at"])
    assert datetime.fromisoformat(old["targets"]["resolution"]["due_at"]) == first.add(old_started, timedelta(hours=27))
    assert first.add(started, timedelta(hours=27)) < due

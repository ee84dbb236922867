"""A follow-up reopened by the customer's rejection is due anew on the real stack: the deadlines table gets the new due
time and, unresolved by then, the follow-up is flagged overdue a second time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from feedback_story import eventually

from opsat.common.commands import CommandMeta
from opsat.common.db import create_engine
from opsat.common.domain import SYSTEM_ACTOR, Actor, Role
from opsat.common.eventstore import EventStore
from opsat.feedback.domain import commands as c

T0 = datetime.now(UTC) - timedelta(days=10)
LEAD = Actor(id="lead-1", organisation="ops", roles=frozenset({Role.team_lead}))
CUSTOMER = Actor(id="u-req", organisation="acme", roles=frozenset({Role.requester}))


async def test_a_rejected_resolution_re_arms_the_overdue_flag(feedback):
    engine = create_engine(feedback.settings.database_url, pool_size=1)
    try:
        store = EventStore(engine, feedback.service.registry())
        # The loop ten days ago: opened (due after 3 days), flagged overdue, contacted, resolved, rejected on day 6.
        for day, actor, command in (
            (0, CUSTOMER, c.OpenFollowUp("fu-late", "acme", "complaint", ("complaint",), customer_id="u-req",
                                         complaint="nobody called")),
            (3.1, SYSTEM_ACTOR, c.MarkFollowUpOverdue("fu-late")),
            (4, LEAD, c.RecordContact("fu-late", "called")),
            (5, LEAD, c.ResolveFollowUp("fu-late", "reset the router")),
            (6, CUSTOMER, c.RecordCustomerReaction("fu-late", False, "still down")),
        ):
            handler = feedback.service.command_handler(feedback.settings, store,
                                                       clock=lambda day=day: T0 + timedelta(days=day))
            await handler.execute(command, actor, CommandMeta(correlation_id="test"))
    finally:
        await engine.dispose()
    new_due = T0 + timedelta(days=9)  # the rejection + 3 days: a day ago

    async def overdue_events():  # type: ignore[no-untyped-def]
        rows = await feedback.rows("select data from events where stream_id = 'fu-late' and "
                                   "event_type = 'opsat.feedback.followup.overdue' order by version")
        return [json.loads(r[0]) for r in rows] if len(rows) == 2 else None

    async with feedback.worker(only=("relay", "reaction:survey_scheduler", "projection:satisfaction", "deadlines")):
        first, second = await eventually(overdue_events, what="a second overdue flag after the rejection")

        async def flagged_in_the_read_model():  # type: ignore[no-untyped-def]
            r = await feedback.client.get("/api/v1/follow-ups?overdue=true", headers=feedback.staff())
            rows = [f for f in r.json() if f["followup_id"] == "fu-late"]
            return rows[0] if rows and len(rows[0]["history"]) == 4 else None

        row = await eventually(flagged_in_the_read_model, what="the reopened follow-up flagged overdue")
    assert datetime.fromisoformat(first["due_at"]) == T0 + timedelta(days=3)
    assert datetime.fromisoformat(second["due_at"]) == new_due
    assert row["status"] == "open" and datetime.fromisoformat(row["due_at"]) == new_due
    assert await feedback.rows("select 1 from deadlines where stream_id = 'fu-late'") == []  # retired once fired

"""Clocks on the real stack: intake's API -> intake's topic -> the SLA monitor's clocks -> `opsat.sla.events`.

A request submitted through intake gets a clock; awaiting the customer moves the due times by exactly the
paused business time; a short test-configured target breaches once, with two worker replicas; replaying
intake's topic from the start changes no clock and emits no second breach.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

from opsat.common import observability as obs
from opsat.common.testing.helpers import rows, scalar
from opsat.common.testing.infra import consume_all, consume_to_end, reset_group_to_earliest
from opsat.sla_monitor.service import SERVICE as SLA
from tests.integration.sla_monitor.clock_helpers import clock, define_policy, eventually, intake_event, topics_visible


async def test_a_clock_follows_the_request_and_a_pause_moves_the_due_times_by_the_paused_time(intake, run_service):
    sla = await run_service(SLA)
    await define_policy(sla, "it-hour", first_response_seconds=3600, resolution_seconds=7200)
    agent, requester = intake.token("agent-1", "ops", "agent"), intake.token()
    async with intake.worker(only=("relay",)), sla.worker():
        rid = await intake.submit()
        started = await eventually(lambda: clock(sla, rid))
        assert started["policy"] == {"policy_id": "it-hour", "version": 1}
        assert started["calendar"] == {"calendar_id": "24x7", "version": 1}
        due_before = datetime.fromisoformat(started["targets"]["resolution"]["due_at"])

        for path, body in (("accept", {"team": "network"}), ("start", None), ("request-info", {"question": "which?"})):
            r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=agent)
            assert r.status_code == 200, r.text
        await eventually(lambda: _paused(sla, rid, True))
        await asyncio.sleep(1.0)
        r = await intake.client.post(f"/api/v1/requests/{rid}/provide-info", json={"answer": "this"}, headers=requester)
        assert r.status_code == 200, r.text
        resumed = await eventually(lambda: _paused(sla, rid, False))
        r = await intake.client.post(f"/api/v1/requests/{rid}/priority", json={"priority": "P1", "reason": "CEO"},
                                     headers=agent)
        assert r.status_code == 200, r.text
        retargeted = await eventually(lambda: _with_policy(sla, rid, "p1"))

    asked, answered = (await intake_event(intake, rid, "customer_info_requested"),
                       await intake_event(intake, rid, "customer_info_provided"))
    span = datetime.fromisoformat(json.loads(answered["data"])["at"]) - \
        datetime.fromisoformat(json.loads(asked["data"])["at"])
    assert span >= timedelta(seconds=1)
    assert datetime.fromisoformat(resumed["targets"]["resolution"]["due_at"]) - due_before == span  # 24x7: exact
    assert resumed["paused_seconds"] == span.total_seconds()
    assert resumed["targets"]["response"]["status"] == "met" and resumed["targets"]["response"]["on_time"]
    assert resumed["team"] == "network"

    # The explanation: every clock event, caused by the intake event that moved it.
    causes = {e["type"]: e["caused_by"] for e in resumed["explanation"]}
    assert causes["opsat.sla.clock.paused"] == str(asked["event_id"])
    assert causes["opsat.sla.clock.resumed"] == str(answered["event_id"])
    assert causes["opsat.sla.clock.started"] == str((await intake_event(intake, rid, "submitted"))["event_id"])
    assert causes["opsat.sla.clock.response_met"] == str((await intake_event(intake, rid, "accepted"))["event_id"])

    # A priority change re-targets the running clock: P1's 4 h on the clock's own (24x7) calendar, pause kept.
    assert retargeted["priority"] == "P1" and retargeted["policy"] == {"policy_id": "p1", "version": 1}
    assert datetime.fromisoformat(retargeted["targets"]["resolution"]["due_at"]) == \
        datetime.fromisoformat(started["started_at"]) + timedelta(hours=4) + span
    causes = {e["type"]: e["caused_by"] for e in retargeted["explanation"]}
    assert causes["opsat.sla.clock.retargeted"] == \
        str((await intake_event(intake, rid, "priority_overridden"))["event_id"])

    other = await sla.client.get(f"/api/v1/clocks/{rid}", headers=sla.token("eve", "globex", "requester"))
    assert other.status_code == 404  # another organisation's clock does not exist for its requesters


async def _with_policy(sla, rid: str, policy_id: str) -> dict | None:  # type: ignore[no-untyped-def]
    found = await clock(sla, rid)
    return found if found and found["policy"]["policy_id"] == policy_id else None


async def _paused(sla, rid: str, paused: bool) -> dict | None:  # type: ignore[no-untyped-def]
    found = await clock(sla, rid)
    return found if found and found["paused"] is paused else None


def applied(outcome: str) -> float:
    return obs.EVENTS_APPLIED.labels("clock_driver", outcome)._value.get()


async def reset_to_earliest(sla, kafka_bootstrap: str) -> None:  # type: ignore[no-untyped-def]
    config = sla.service.runner_config(sla.settings, "clock_driver")
    await reset_group_to_earliest(kafka_bootstrap, config.group_id, sla.settings.topic("intake"), 6)


async def test_a_short_target_breaches_once_with_two_replicas_and_a_replay_emits_no_second_breach(
        intake, run_service, kafka_bootstrap):
    sla = await run_service(SLA)
    await define_policy(sla, "it-blink", first_response_seconds=1, resolution_seconds=2)
    async with intake.worker(only=("relay",)):
        await topics_visible(sla, kafka_bootstrap)
        async with sla.worker(), sla.worker():  # two replicas: one consumer group, one deadlines table
            rid = await intake.submit()
            marks = await eventually(lambda: _marks(sla, rid, 8))  # 50, 80, 100, 150 % of both targets

            async def listed(path: str, escalated: bool = False) -> list[dict] | None:
                body = (await sla.client.get(path, headers=sla.token("bob", "ops", "agent"))).json()
                if escalated and not all(b["escalated_to"] == "director" for b in body):
                    return None  # the read model applies the escalations after the breaches
                return body if len(body) == 2 and {b["request_id"] for b in body} == {rid} else None

            breach_list = await eventually(lambda: listed("/api/v1/breaches"))
            at_risk = await eventually(lambda: listed("/api/v1/at-risk", escalated=True))
        assert {b["target"] for b in breach_list} == {"response", "resolution"}
        assert [r["target"] for r in at_risk] == ["response", "resolution"]  # least time left first
        assert all(r["time_left_seconds"] < 0 and r["escalated_to"] == "director" for r in at_risk)
        topic = sla.settings.topic("sla")
        records = [json.loads(r.value) for r in await consume_all(kafka_bootstrap, topic, min_count=len(marks) + 1)]
        breaches = [r for r in records if r["type"] == "opsat.sla.clock.breached.v1" and r["subject"] == rid]
        assert sorted(b["data"]["target"] for b in breaches) == ["resolution", "response"]
        assert all(b["data"]["escalate_to"] == "manager" and b["tenant"] == "acme" for b in breaches)
        assert sorted(marks) == sorted([("opsat.sla.clock.warned", t) for t in ("response", "resolution")] * 2 +
                                       [("opsat.sla.clock.breached", t) for t in ("response", "resolution")] +
                                       [("opsat.sla.clock.escalated", t) for t in ("response", "resolution")])
        version = len(await rows(sla.settings.database_url, "select 1 from events where stream_id = $1", rid))
        on_intake = len(await rows(intake.settings.database_url, "select 1 from events"))

        # Replay intake's topic from the start, with the dedupe rows gone too: the Idempotency-Keys still hold.
        await rows(sla.settings.database_url, "delete from reactions.processed_events where projection = 'clock_driver'")
        await reset_to_earliest(sla, kafka_bootstrap)
        before = applied("applied")
        async with sla.worker():
            await eventually(lambda: _true(applied("applied") >= before + on_intake))
            await asyncio.sleep(0.5)  # a few timer polls (0.2 s): a wrongly re-armed deadline would fire
            await eventually(lambda: _outbox_empty(sla))  # whatever the replay caused is on the topic
        assert len(await rows(sla.settings.database_url, "select 1 from events where stream_id = $1", rid)) == version
        records = [json.loads(r.value) for r in await consume_to_end(kafka_bootstrap, topic)]
        assert len([r for r in records if r["type"] == "opsat.sla.clock.breached.v1"]) == 2

    compliance = (await sla.client.get("/api/v1/compliance?target=resolution&group_by=priority",
                                       headers=sla.token("bob", "ops", "agent"))).json()
    assert compliance == [{"priority": "P2", "decided": 1, "met_on_time": 0, "excused": 0,
                           "compliance_percent": 0.0}]


async def _marks(sla, rid: str, n: int) -> list[tuple[str, str]] | None:  # type: ignore[no-untyped-def]
    found = await rows(sla.settings.database_url, "select event_type, data->>'target' as target from events"
                       " where stream_id = $1 and data ? 'target'", rid)
    return [(r["event_type"], r["target"]) for r in found] if len(found) >= n else None


async def _true(value: bool) -> bool:
    return value


async def _outbox_empty(sla) -> bool:  # type: ignore[no-untyped-def]
    return await scalar(sla.settings.database_url, "select count(*) from outbox") == 0

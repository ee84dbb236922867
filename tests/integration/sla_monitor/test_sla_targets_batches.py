"""The `sla_targets` projection applied a consumer batch at a time writes exactly what it writes one event at a
time, on the real database: one deterministic stream of clock events (every kind the projection reads, clocks
interleaved), outages and intake events (holders, customer waits, reopens, time logged) goes into two read-model
schemas, one event per transaction and in batches of varying size; every table ends the same."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from opsat.common.consumer import ReceivedEvent, create_read_model, read_model_engine
from opsat.common.db import create_engine
from opsat.common.domain import DomainEvent
from opsat.common.projections import snapshot
from opsat.sla_monitor.domain import events as ev
from opsat.sla_monitor.projections.targets import TargetsProjection

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
CALENDAR = {"time_zone": "UTC", "always_open": True}


def _received(source: str, subject: str, sequence: int, event_type: str, data: dict[str, Any],
              event: DomainEvent | None) -> ReceivedEvent:
    return ReceivedEvent(id=str(uuid.uuid4()), type=f"{event_type}.v1", event_type=event_type, schema_version=1,
                         source=source, subject=subject, sequence=sequence, time=START, data=data, tenant="acme",
                         actor="system", correlation_id="test", event=event)


def _life(rid: str, rnd: random.Random) -> list[tuple[str, DomainEvent | tuple[str, dict[str, Any]]]]:
    """One request's events in order: ("sla", clock event) or ("intake", (type, data))."""
    t = START + timedelta(minutes=rnd.randrange(600))
    at = lambda: t  # noqa: E731 - the current instant of this life

    def due(hours: float) -> datetime:
        return t + timedelta(hours=hours)

    out: list[tuple[str, Any]] = []
    sla = lambda e: out.append(("sla", e))  # noqa: E731
    intake = lambda name, **data: out.append(("intake", (f"opsat.intake.request.{name}",  # noqa: E731
                                                          {"request_id": rid, "at": at().isoformat(), **data})))
    team = rnd.choice(["ops", "network", None])
    sla(ev.ClockStarted(request_id=rid, at=at(), organisation_id="acme", kind="incident", priority="P3",
                        customer_tier="standard", service=rnd.choice(["mail", None]), team=team, policy_id="p",
                        policy_version=1, calendar_id="24x7", calendar_version=1, calendar=CALENDAR,
                        targets={"response": 3600, "resolution": 36000}, warning_thresholds=[50, 80],
                        escalations=[{"percent": 100, "role": "manager"}],
                        due={"response": due(1), "resolution": due(10)}))
    if rnd.random() < 0.1:  # a redelivered start changes nothing
        sla(ev.ClockStarted(request_id=rid, at=at() + timedelta(seconds=1), organisation_id="other", kind="change",
                            priority="P1", customer_tier="gold", policy_id="q", policy_version=2, calendar_id="cn",
                            calendar_version=1, calendar=CALENDAR, targets={"response": 1, "resolution": 2},
                            warning_thresholds=[50], escalations=[], due={"response": due(2), "resolution": due(3)}))
    for _ in range(rnd.randrange(1, 9)):
        t += timedelta(minutes=rnd.randrange(1, 90))
        target = rnd.choice(["response", "resolution"])
        match rnd.randrange(17):
            case 0:
                assignee = rnd.choice(["alice", "bob", None])
                sla(ev.ResponseMet(request_id=rid, at=at(), on_time=rnd.random() < 0.7, how="accepted", team=team))
                intake("accepted", team=team or "ops", assignee=assignee)
            case 1:
                sla(ev.ClockPaused(request_id=rid, at=at(), reason="awaiting_customer"))
                intake("customer_info_requested", question="which?")
            case 2:
                sla(ev.ClockResumed(request_id=rid, at=at(), reason=rnd.choice(["customer_replied", "reopened"]),
                                    paused_seconds=60.0, due={"resolution": due(11)}))
                if rnd.random() < 0.5:
                    intake("reopened")
            case 3:
                sla(ev.ResolutionMet(request_id=rid, at=at(), on_time=rnd.random() < 0.5))
            case 4:
                percent = rnd.choice([50, 80])
                sla(ev.ThresholdReached(request_id=rid, at=at(), target=target, percent=percent, due_at=at(),
                                        escalate_to=rnd.choice(["team_lead", None])))
            case 5:
                sla(ev.TargetBreached(request_id=rid, at=at(), target=target, due_at=at(),
                                      escalate_to=rnd.choice(["manager", None])))
            case 6:
                sla(ev.ClockEscalated(request_id=rid, at=at(), target=target, percent=150, escalate_to="director"))
            case 7:
                sla(ev.ClockRetargeted(request_id=rid, at=at(), priority="P2", policy_id="p2", policy_version=3,
                                       targets={"response": 1800, "resolution": 18000}, warning_thresholds=[50],
                                       escalations=[], due={"response": due(0.5), "resolution": due(5)}))
            case 8:
                team = rnd.choice(["ops", "network", "db"])
                sla(ev.TeamChanged(request_id=rid, at=at(), team=team))
                intake("assigned", team=team, assignee=rnd.choice(["carol", None]),
                       previous_team=rnd.choice(["ops", None]), previous_assignee=rnd.choice(["alice", None]))
            case 9:
                sla(ev.ClockCancelled(request_id=rid, at=at(), reason="cancelled"))
            case 10 | 11:
                sla(ev.ClockStalled(request_id=rid, at=at(), quiet_since=at() - timedelta(hours=2),
                                    quiet_seconds=7200.0, team=team))
            case 12:
                sla(ev.StallCleared(request_id=rid, at=at(), quiet_since=at() - timedelta(hours=2),
                                    activity="opsat.intake.request.internal_note_added"))
            case 13:
                sla(rnd.choice([ev.ExcusalRequested(request_id=rid, at=at(), target=target, cause="customer",
                                                    reason="away", by="bob"),
                                ev.ExcusalApproved(request_id=rid, at=at(), target=target, reason="ok", by="mia"),
                                ev.ExcusalRejected(request_id=rid, at=at(), target=target, reason="no", by="mia")]))
            case 14:
                entry = f"{rid}-{rnd.randrange(3)}"  # a repeated entry id keeps its first row
                intake("time_logged", entry_id=entry, by=rnd.choice(["alice", "bob"]), minutes=rnd.randrange(5, 120),
                       work_date=date(2026, 3, 2).isoformat())
            case 15:
                sla(ev.UpdateGiven(request_id=rid, at=at(), next_due_at=due(4)))  # no row of its own
            case 16:
                intake("watcher_added", watcher="dave")  # not read
    return out


def stream(requests: int, seed: int) -> list[ReceivedEvent]:
    """Every request's life in order, the lives interleaved at random, with outages reported and ended."""
    rnd = random.Random(seed)
    lives = {f"req-{i}": _life(f"req-{i}", rnd) for i in range(requests)}
    sequences: dict[tuple[str, str], int] = {}
    out: list[ReceivedEvent] = []
    outage = 0
    while lives:
        rid = rnd.choice(sorted(lives))
        source, item = lives[rid].pop(0)
        if not lives[rid]:
            del lives[rid]
        key = (source, rid)
        sequences[key] = sequences.get(key, 0) + 1
        if source == "sla":
            assert isinstance(item, ev.ClockEvent)
            out.append(_received("sla", rid, sequences[key], item.event_type, item.model_dump(mode="json"), item))
        else:
            event_type, data = item  # type: ignore[misc]
            out.append(_received("intake", rid, sequences[key], event_type, data, None))
        if rnd.random() < 0.02:
            outage += 1
            oid = f"out-{outage}"
            reported = ev.OutageReported(outage_id=oid, service="mail", severity="major", started_at=START,
                                         ended_at=None, by="monitoring", at=START)
            ended = ev.OutageEnded(outage_id=oid, service="mail", ended_at=START + timedelta(hours=outage), by="monitoring",
                                   at=START)
            out += [_received("sla", oid, 1, reported.event_type, {}, reported),
                    _received("sla", oid, 2, ended.event_type, {}, ended)]
    return out


async def test_a_batch_writes_what_its_events_write_one_at_a_time(database_url):  # type: ignore[no-untyped-def]
    events = stream(80, seed=14)
    projection = TargetsProjection("sla", "intake")
    engine = create_engine(database_url, pool_size=2)
    try:
        for schema in ("rm_one", "rm_batch"):
            await create_read_model(engine, projection, schema)
        one = read_model_engine(engine, "rm_one")
        for received in events:
            async with one.begin() as conn:
                await projection.apply(conn, received)
        batched = read_model_engine(engine, "rm_batch")
        rnd, i, batches = random.Random(5), 0, 0
        while i < len(events):
            size = rnd.choice((1, 2, 9, 50, 120))
            async with batched.begin() as conn:
                await projection.apply_batch(conn, events[i:i + size])
            i, batches = i + size, batches + 1
        expected = await snapshot(engine, projection, "rm_one")
        assert await snapshot(engine, projection, "rm_batch") == expected
    finally:
        await engine.dispose()
    # The stream reaches every kind of row change the projection makes.
    targets = expected["sla_targets"]
    assert len(targets) == 160 and batches > 10
    assert {r["status"] for r in targets} == {"running", "paused", "met", "cancelled"}
    assert {r["warned_percent"] for r in targets} >= {50, 80}
    assert {r["excusal"] for r in targets} >= {"requested", "approved", "rejected"}
    assert {r["escalated_to"] for r in targets} >= {"team_lead", "manager", "director"}
    assert any(r["breached_at"] for r in targets) and any(r["policy_id"] == "p2" for r in targets)
    assert all(r["organisation_id"] == "acme" for r in targets)  # a redelivered start changed nothing
    assert expected["sla_stalls"] and expected["outages"] and all(o["ended_at"] for o in expected["outages"])
    work = expected["request_work"]
    assert any(r["reassignments"] > 1 for r in work) and any(r["reopens"] for r in work)
    assert any(r["customer_waits"] for r in work)
    assert any(r["team"] for r in expected["time_logs"]) and any(r["team"] is None for r in expected["time_logs"])

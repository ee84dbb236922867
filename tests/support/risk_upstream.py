"""A deterministic stream of upstream events as the risk service's signal driver receives them: intake's
submissions and priority overrides, the SLA monitor's clocks (started, team changed, response met, re-targeted,
breached) and feedback's answers, each stream in order, the streams interleaved with some arriving late.

Used by the batch-equivalence test (fed straight to the driver) and by the signal-evaluation bench (published
to Kafka as CloudEvents and replayed through the kit's runner)."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from opsat.common.consumer import ReceivedEvent
from opsat.common.envelope import to_cloudevent


@dataclass(frozen=True)
class Shape:
    teams: tuple[str, ...] = ("network", "desktop", "database")
    services: tuple[str, ...] = ("mail", "vpn", "erp")
    days: float = 10.0
    p1: float = 0.03
    override_to_p1: float = 0.05
    breach: float = 0.15
    p1_breach: float = 0.5
    answer: float = 0.3
    team_csat: tuple[float, ...] = (60.0, 78.0, 68.0)  # mean score of each team's answers


def upstream(events: int, start: datetime, seed: int = 7, shape: Shape = Shape()) -> list[tuple[str, ReceivedEvent]]:
    """`events` events as (publishing service, event), in arrival order."""
    rnd = random.Random(seed)
    streams: list[list[tuple[float, str, ReceivedEvent]]] = []
    count = 0
    while count < events:
        more = _request(rnd, start, shape)
        streams += more
        count += sum(len(s) for s in more)
    # Each stream in order; across streams an event arrives up to two hours after its time.
    arrivals: list[tuple[float, int, int, str, ReceivedEvent]] = []
    for n, stream in enumerate(streams):
        last = 0.0
        for i, (at, service, event) in enumerate(stream):
            last = max(last, at + rnd.uniform(0, 7200))
            arrivals.append((last, n, i, service, event))
    arrivals.sort(key=lambda a: a[:3])
    return [(service, event) for _, _, _, service, event in arrivals[:events]]


def _request(rnd: random.Random, start: datetime, shape: Shape) -> list[list[tuple[float, str, ReceivedEvent]]]:
    rid = str(uuid.UUID(int=rnd.getrandbits(128)))
    t0 = rnd.uniform(0, shape.days * 86400)
    kind = "incident" if rnd.random() < 0.6 else "service_request"
    priority = "P1" if rnd.random() < shape.p1 else rnd.choice(("P2", "P3", "P3", "P4"))
    t = rnd.randrange(len(shape.teams))
    team = shape.teams[t]
    service = rnd.choice(shape.services) if rnd.random() < 0.8 else None

    def event(source: str, subject: str, sequence: int, event_type: str, seconds: float, **data: Any
              ) -> tuple[float, str, ReceivedEvent]:
        at = start + timedelta(seconds=seconds)
        return seconds, source, ReceivedEvent(
            id=str(uuid.UUID(int=rnd.getrandbits(128))), type=f"{event_type}.v1", event_type=event_type,
            schema_version=1, source=f"/opsat/{source}", subject=subject, sequence=sequence, time=at,
            data={**data, "at": at.isoformat()}, tenant="acme", actor="system", correlation_id=None)

    intake = [event("intake", rid, 1, "opsat.intake.request.submitted", t0, request_id=rid, kind=kind,
                    priority=priority, team=team, service=service)]
    sla = [event("sla", rid, 1, "opsat.sla.clock.started", t0, request_id=rid, kind=kind, priority=priority,
                 team=team, service=service)]
    if rnd.random() < 0.1:
        team = shape.teams[(t + 1) % len(shape.teams)]
        sla.append(event("sla", rid, len(sla) + 1, "opsat.sla.clock.team_changed", t0 + 600, request_id=rid,
                         team=team))
    if priority != "P1" and rnd.random() < shape.override_to_p1:
        intake.append(event("intake", rid, 2, "opsat.intake.request.priority_overridden", t0 + 900, request_id=rid,
                            priority="P1", previous_priority=priority))
        sla.append(event("sla", rid, len(sla) + 1, "opsat.sla.clock.retargeted", t0 + 900, request_id=rid,
                         priority="P1"))
        priority = "P1"
    sla.append(event("sla", rid, len(sla) + 1, "opsat.sla.clock.response_met", t0 + 1800, request_id=rid, team=team))
    if rnd.random() < (shape.p1_breach if priority == "P1" else shape.breach):
        sla.append(event("sla", rid, len(sla) + 1, "opsat.sla.clock.breached", t0 + rnd.uniform(3600, 86400),
                         request_id=rid, target="resolution"))
    streams = [intake, sla]
    if rnd.random() < shape.answer:
        survey = f"svy-{rid}"
        score = max(0.0, min(100.0, rnd.gauss(shape.team_csat[t], 20)))
        relationship = rnd.random() < 0.05  # a campaign's survey: about no request, no team
        streams.append([event("feedback", survey, 2, "opsat.feedback.survey.answered", t0 + 86400 + 3600,
                              survey_id=survey, score=round(score, 1), team=None if relationship else team,
                              assignee=None, request_id=None if relationship else rid,
                              campaign_id="cmp-1" if relationship else None)])
    return streams


def cloud_event(event: ReceivedEvent, stream_type: str) -> bytes:
    """The CloudEvent the relay would publish for `event` (what `decode_record` reads back)."""
    return json.dumps(to_cloudevent(source=event.source, event_id=event.id, ce_type=event.type, stream_id=event.subject,
                                    stream_type=stream_type, version=event.sequence, time=event.time, data=event.data,
                                    metadata={"tenant": event.tenant, "actor": event.actor})).encode()

"""Shared pieces of the feedback tests on the real stack: a local SMTP sink (aiosmtpd) that keeps what it
catches, the feedback service with its harness, and the walk of a request through intake to its closure."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import socket
from dataclasses import dataclass, field

import asyncpg
from aiosmtpd.controller import Controller

from opsat.common.db import asyncpg_dsn
from opsat.common.testing.service import ServiceHarness

LINK_TOKEN = re.compile(r"#t=([A-Za-z0-9_-]+)")
LOW = {"response_speed": 2, "professionalism": 2, "attitude": 3, "resolution": 1}  # 37.0: very dissatisfied
ALL_FOUR_GOOD = {"response_speed": 5, "professionalism": 5, "attitude": 5, "resolution": 4}  # 93.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SmtpSink:
    """What a real relay would accept: every message the sink caught, parsed."""

    port: int
    messages: list[email.message.EmailMessage] = field(default_factory=list)
    controller: Controller | None = None

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def start(self) -> SmtpSink:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


def token_in(message: email.message.EmailMessage) -> str:
    match = LINK_TOKEN.search(message.get_content())
    assert match, message.get_content()
    return match.group(1)


class Feedback(ServiceHarness):
    async def register(self, contact: str, organisation: str, mail: str, language: str = "en") -> None:
        r = await self.client.post(f"/api/v1/contacts/{contact}/register", headers=self.token("root", "ops", "admin"),
                                   json={"organisation_id": organisation, "email": mail, "language": language})
        assert r.status_code == 200, r.text

    async def answer(self, token: str, ratings: dict, nps: int, comment: str | None = None, version: int = 1):  # type: ignore[no-untyped-def]
        return await self.client.post("/api/v1/public/answers", json={
            "token": token, "template_version": version, "ratings": ratings, "nps": nps, "comment": comment})

    def staff(self) -> dict[str, str]:
        return self.token("lead-1", "ops", "team_lead")

    async def rows(self, sql: str, *args: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(asyncpg_dsn(self.settings.database_url))
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()


async def eventually(check, timeout: float = 30.0, what: str = "condition", explain=None):  # type: ignore[no-untyped-def]
    """`check()` until it returns something true; on timeout, fail with `await explain()` (where things stand)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await check()):
        if asyncio.get_running_loop().time() >= deadline:
            state = await explain() if explain is not None else ""
            raise AssertionError(f"{what} not reached in {timeout:.0f}s{state and '; '}{state}")
        await asyncio.sleep(0.1)
    return result


async def where_the_survey_is(intake: ServiceHarness, feedback: Feedback) -> str:
    """Each hop of closure -> invitation email, for a failure message: intake's relay, the closure reaction,
    feedback's relay, the mail scheduling reaction, the mail outbox, and every consumer group's lag."""
    from opsat.common.grouplag import group_lags

    async def rows(harness: ServiceHarness, sql: str) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(asyncpg_dsn(harness.settings.database_url))
        try:
            return await conn.fetch(sql)
        finally:
            await conn.close()

    processed = "select projection, count(*) from reactions.processed_events group by projection order by 1"
    hops = {
        "intake closures": await rows(intake, "select count(*) from events where event_type = "
                                              "'opsat.intake.request.closed'"),
        "intake outbox unpublished": await rows(intake, "select count(*) from outbox"),
        "feedback reactions processed": await rows(feedback, processed),
        "surveys issued": await rows(feedback, "select count(*) from events where event_type = "
                                               "'opsat.feedback.survey.issued'"),
        "feedback outbox unpublished": await rows(feedback, "select count(*) from outbox"),
        "mail outbox": await rows(feedback, "select purpose, status, attempts, last_error, next_attempt_at "
                                            "from mail_outbox order by id"),
    }
    try:
        lags = [f"{p.consumer} {p.partition.topic}[{p.partition.partition}] {p.committed}/{p.end}"
                for p in await group_lags(feedback.service, feedback.settings) if p.lag]
    except Exception as exc:  # the diagnosis must not hide the failure it explains
        lags = [f"unknown ({exc!r})"]
    return "; ".join(f"{k}: {[tuple(r) for r in v]}" for k, v in hops.items()) + f"; lagging: {lags or 'none'}"


async def close_request(intake, requester: str = "u-req", org: str = "acme") -> str:  # type: ignore[no-untyped-def]
    """Submit, accept (team network, assignee agent-1), start, resolve and accept the delivery: closed."""
    customer, agent = intake.token(requester, org, "requester"), intake.token("agent-1", "ops", "agent")
    rid = await intake.submit(customer, service="mail")
    for path, who, body in [("accept", agent, {"team": "network", "assignee": "agent-1"}), ("start", agent, None),
                            ("resolve", agent, {"solution": "fixed"}), ("accept-delivery", customer, {})]:
        r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=who)
        assert r.status_code == 200, (path, r.text)
    return rid


async def issue_survey(feedback: Feedback, survey_id: str, at, recipient: str | None = None,  # type: ignore[no-untyped-def]
                       template: dict | None = None) -> str:
    """Issue a survey as the service's reaction would, at time `at` (e.g. days ago); returns its token."""
    from datetime import timedelta

    from opsat.common.commands import CommandMeta
    from opsat.common.db import create_engine
    from opsat.common.domain import SYSTEM_ACTOR
    from opsat.common.eventstore import EventStore
    from opsat.feedback.domain import commands as c
    from opsat.feedback.domain import tokens
    from opsat.feedback.domain.templates import DEFAULT_TEMPLATE

    engine = create_engine(feedback.settings.database_url, pool_size=1)
    try:
        handler = feedback.service.command_handler(feedback.settings, EventStore(engine, feedback.service.registry()),
                                                   clock=lambda: at)
        token = tokens.token_for(feedback.settings.token_key_bytes(), survey_id)
        await handler.execute(c.IssueSurvey(
            survey_id=survey_id, organisation_id="acme", request_id=f"r-{survey_id}", requester_id="u-req",
            template=template or DEFAULT_TEMPLATE.to_spec(), token_hash=tokens.token_hash(token), language="zh",
            recipient=recipient, validity=timedelta(days=7), reminder_after=timedelta(days=3), team="network",
            assignee="agent-1", kind="incident", priority="P2", service="mail"),
            SYSTEM_ACTOR, CommandMeta(correlation_id="test"))
        return token
    finally:
        await engine.dispose()

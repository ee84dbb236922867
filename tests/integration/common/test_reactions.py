"""A second service declared only through the kit reacts to intake's `request.closed` over real Kafka and
PostgreSQL: one command per closed request, caused by the intake event, and nothing new on replay (the command
commits with the consumer's processed mark, or not at all)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import asyncpg
from probe_service import probe

from opsat.common import observability as obs
from opsat.common.consumer import ReceivedEvent
from opsat.common.db import asyncpg_dsn, create_engine
from opsat.common.eventstore import EventStore
from opsat.common.testing.infra import reset_group_to_earliest as replay_from_start
from opsat.intake.service import SERVICE as INTAKE


async def rows(database_url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def surveys(service) -> list[dict]:  # type: ignore[no-untyped-def]
    found = await rows(service.settings.database_url,
                       "select data::text, metadata::text from events where event_type = 'opsat.probe.survey.issued'")
    return [{**json.loads(r["data"]), **json.loads(r["metadata"])} for r in found]


async def eventually(check, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await check()):
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)
    return result


def counted(outcome: str) -> float:
    return obs.EVENTS_APPLIED.labels("survey_on_close", outcome)._value.get()


async def reset_group_to_earliest(service, kafka_bootstrap: str) -> None:  # type: ignore[no-untyped-def]
    config = service.service.runner_config(service.settings, "survey_on_close")
    await replay_from_start(kafka_bootstrap, config.group_id, service.settings.topic("intake"), INTAKE.partitions)


async def close_request(intake) -> str:  # type: ignore[no-untyped-def]
    requester, agent = intake.token("u-req", "acme", "requester"), intake.token("agent-1", "ops", "agent")
    rid = await intake.submit(requester, team="network")
    for path, who, body in [("accept", agent, {}), ("start", agent, None), ("resolve", agent, {"solution": "fixed"}),
                            ("accept-delivery", requester, {})]:
        r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=who)
        assert r.status_code == 200, (path, r.text)
    return rid


async def test_a_reaction_issues_one_command_per_closed_request_and_none_on_replay(intake, run_service,
                                                                                    kafka_bootstrap):
    surveys_service = await run_service(probe())
    async with intake.worker(only=("relay",)):
        async with surveys_service.worker():
            closed = [await close_request(intake) for _ in range(3)]
            still_open = await intake.submit()  # submitted only: no survey
            issued = await eventually(lambda: _at_least(surveys_service, 3))
        closed_events = {r["stream_id"]: str(r["event_id"]) for r in await rows(
            intake.settings.database_url,
            "select stream_id, event_id from events where event_type = 'opsat.intake.request.closed'")}
        assert sorted(s["request_id"] for s in issued) == sorted(closed)
        assert still_open not in {s["request_id"] for s in issued}
        for survey in issued:  # caused by the intake event, in the request's tenant, by the kit's service actor
            assert survey["causation_id"] == closed_events[survey["request_id"]]
            assert survey["tenant"] == "acme" and survey["actor"] == "system"

        on_topic = len(await rows(intake.settings.database_url, "select 1 from events"))

        # Replay 1: the group starts again from the beginning; the dedupe table drops every event.
        duplicates = counted("duplicate")
        await reset_group_to_earliest(surveys_service, kafka_bootstrap)
        async with surveys_service.worker():
            await eventually(lambda: _true(counted("duplicate") >= duplicates + on_topic))
        assert len(await surveys(surveys_service)) == 3



async def test_a_reactions_command_commits_with_the_consumers_transaction_or_not_at_all(intake, run_service):
    """What makes a replay safe: the command's events are written in the transaction that marks the event
    processed. Rolled back, it leaves no survey and no outbox row; committed, exactly one."""
    surveys_service = await run_service(probe())
    reaction = surveys_service.service.consumer(surveys_service.settings, "survey_on_close")
    engine = create_engine(surveys_service.settings.database_url, pool_size=2)
    try:
        reaction.handler = surveys_service.service.command_handler(
            surveys_service.settings, EventStore(engine, surveys_service.service.registry()))
        event = ReceivedEvent(id=str(uuid.uuid4()), type="opsat.intake.request.closed.v1",
                              event_type="opsat.intake.request.closed", schema_version=1, source="/opsat/intake",
                              subject="REQ-9", sequence=5, time=datetime.now(UTC),
                              data={"request_id": "REQ-9", "reason": "accepted"}, tenant="acme", actor="u-req",
                              correlation_id="corr-9")
        async with engine.connect() as conn:
            transaction = await conn.begin()
            await reaction.apply(conn, event)
            assert len(await surveys(surveys_service)) == 0  # not visible before the consumer commits
            await transaction.rollback()
        assert await surveys(surveys_service) == []
        assert await rows(surveys_service.settings.database_url, "select 1 from outbox") == []
        async with engine.begin() as conn:
            await reaction.apply(conn, event)
        [survey] = await surveys(surveys_service)
        assert survey["request_id"] == "REQ-9" and survey["causation_id"] == event.id
        assert len(await rows(surveys_service.settings.database_url, "select 1 from outbox")) == 1
    finally:
        await engine.dispose()


async def _at_least(service, n: int) -> list[dict] | None:  # type: ignore[no-untyped-def]
    found = await surveys(service)
    return found if len(found) >= n else None


async def _true(value: bool) -> bool:
    return value

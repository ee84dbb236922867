"""(7) Survey answers per second over HTTP, and answer-to-visible latency in the CSAT read model (feedback).

Surveys are issued beforehand in the bench process through the service's own command handler (as its reaction
to intake's closures would), with the token key the service processes derive from this run's dev key. Then:
- throughput: `POST /api/v1/public/answers` with distinct tokens, `concurrency` in flight, for `seconds` (or until
  the tokens run out), one uvicorn process; answers/s = 201 answers / elapsed;
- latency: open loop at `rate` answers/s with the worker running; for every survey the answer's response time
  and the first query of `read_model.responses` that sees its row (run at each of the projection's NOTIFYs);
  p50/p99 of the difference.
The rate limits are lifted for the run (one client address sends everything).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from common import Bench, CpuMeter, ReadModelCommits, Result, postgres_cpu_seconds, r, summary_ms
from httpraw import RawClient

RATINGS = {"response_speed": 4, "professionalism": 5, "attitude": 4, "resolution": 5}
LIMITS = {"OPSAT_ANSWER_LIMIT_PER_CLIENT": "100000000", "OPSAT_ANSWER_LIMIT_PER_TOKEN": "100"}


async def issue(database_url: str, count: int, prefix: str) -> list[tuple[str, str]]:
    """(survey id, token) of `count` surveys issued now."""
    from opsat.common.commands import CommandMeta
    from opsat.common.db import create_engine
    from opsat.common.domain import SYSTEM_ACTOR
    from opsat.common.eventstore import EventStore
    from opsat.feedback.domain import commands as c
    from opsat.feedback.domain import tokens
    from opsat.feedback.domain.templates import DEFAULT_TEMPLATE
    from opsat.feedback.service import SERVICE
    from opsat.feedback.settings import FeedbackSettings

    settings = FeedbackSettings(database_url=database_url)
    key = settings.token_key_bytes()
    engine = create_engine(database_url, pool_size=8)
    handler = SERVICE.command_handler(settings, EventStore(engine, SERVICE.registry()))
    spec = DEFAULT_TEMPLATE.to_spec()
    out: list[tuple[str, str]] = []

    async def one(i: int) -> None:
        survey_id = f"svy-{prefix}{i:07d}"
        token = tokens.token_for(key, survey_id)
        await handler.execute(c.IssueSurvey(
            survey_id=survey_id, organisation_id="bench-org", request_id=f"r-{prefix}{i}", requester_id=f"u{i % 500}",
            template=spec, token_hash=tokens.token_hash(token), language="zh", recipient=None,
            validity=timedelta(days=7), reminder_after=timedelta(days=3), team=f"team-{i % 7}", assignee=f"a{i % 40}",
            kind="incident", priority="P3", service="mail"), SYSTEM_ACTOR, CommandMeta(correlation_id="bench"))
        out.append((survey_id, token))

    try:
        for start in range(0, count, 64):
            await asyncio.gather(*(one(i) for i in range(start, min(start + 64, count))))
    finally:
        await engine.dispose()
    return out


def _body(token: str) -> bytes:
    return json.dumps({"token": token, "template_version": 1, "ratings": RATINGS, "nps": 9}).encode()


async def throughput(bench: Bench, concurrency: int, seconds: float, surveys: int) -> tuple[Result, dict[str, Any]]:
    db = await bench.create_database("fb_answers", service="feedback")
    url_db = bench.infra.sqlalchemy_url(db)
    issued = await issue(url_db, surveys, "t")
    api, url = await bench.start_api(db, 1, "feedback", service="feedback", **LIMITS)
    host, _, port = url.removeprefix("http://").partition(":")
    client = RawClient(host, int(port), {}, concurrency)
    await client.open()
    queue = list(reversed(issued))
    statuses: dict[int, int] = {}
    meter = CpuMeter({"api": api.pids, "=postgres": postgres_cpu_seconds})
    meter.start()
    started = time.perf_counter()
    deadline = started + seconds

    async def loop() -> None:
        while queue and time.perf_counter() < deadline:
            _, token = queue.pop()
            status, _ = await client.send(client.build("POST", "/api/v1/public/answers", _body(token)))
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = meter.stop()
    await client.close()
    bench.record_rss("feedback_api", api)
    bench.stop(api)
    answered = statuses.get(201, 0)
    result = Result.measured("feedback_answers_per_s", r(answered / elapsed, 1), "answers/s", None, {
        "concurrency": concurrency, "seconds": r(elapsed, 2), "statuses": statuses, "surveys_issued": surveys,
        "cpu": cpu})
    return result, {"ran_out_of_surveys": not queue}


async def _consumers_caught_up(bench: Bench, db: str, namespace: str) -> bool:
    """Whether every consumer group of the feedback worker has committed the end of each partition it reads."""
    from opsat.common.grouplag import group_lags
    from opsat.feedback.service import SERVICE
    from opsat.feedback.settings import FeedbackSettings

    settings = FeedbackSettings(database_url=bench.infra.sqlalchemy_url(db), kafka_bootstrap=bench.infra.bootstrap,
                                topic_namespace=namespace)
    return all(p.lag == 0 for p in await group_lags(SERVICE, settings))


async def latency(bench: Bench, rate: float, seconds: float, poll_s: float = 0.1) -> Result:
    """Answer -> row in the CSAT read model, found by a query at each of the projection's NOTIFYs (as in
    read_model_latency.py: no instrument polling the database every few milliseconds beside what it measures)."""
    db = await bench.create_database("fb_latency", service="feedback")
    ns = f"{bench.namespace}fb"
    count = int(rate * seconds)
    issued = await issue(bench.infra.sqlalchemy_url(db), count, "l")
    api, url = await bench.start_api(db, 1, "feedback-lat", namespace=ns, service="feedback", **LIMITS)
    worker = await bench.start_worker(db, "feedback-lat", namespace=ns, service="feedback")
    host, _, port = url.removeprefix("http://").partition(":")
    client = RawClient(host, int(port), {}, 16)
    await client.open()
    conn = await asyncpg.connect(bench.infra.dsn(db))
    # The surveys were issued before the worker started: it publishes and projects them first, so that the answers
    # do not queue behind that backlog (the figure is an answer's latency, not the worker's catch-up).
    # Everything the worker does with them, not only the CSAT read model: the mail loop (each invitation attempted,
    # here undeliverable without an address, then recorded on its survey as an event) and every consumer of those
    # events work through the issued surveys too, in the same process.
    caught_up_by = time.perf_counter() + 120
    while time.perf_counter() < caught_up_by and not (
            await conn.fetchval("select count(*) from read_model.surveys") >= count
            and await conn.fetchval("select count(*) from mail_outbox where status = 'pending'") == 0
            and await conn.fetchval("select count(*) from mail_attempts where not recorded") == 0
            and await conn.fetchval("select count(*) from outbox") == 0
            and await _consumers_caught_up(bench, db, ns)):
        await asyncio.sleep(0.5)
    answered: dict[str, float] = {}
    visible: dict[str, float] = {}
    done = asyncio.Event()
    commits = await ReadModelCommits.listen(bench.infra.dsn(db))

    async def poller() -> None:
        while not done.is_set() or len(visible) < len(answered):
            await commits.wait(poll_s)
            waiting = [s for s in answered if s not in visible]
            stamp = time.perf_counter()
            if waiting:
                for row in await conn.fetch("select survey_id from read_model.responses where survey_id = any($1)",
                                            waiting):
                    visible.setdefault(row[0], stamp)
            if done.is_set() and time.perf_counter() - last_send > 15:
                break

    async def send(survey_id: str, token: str) -> None:
        status, _ = await client.send(client.build("POST", "/api/v1/public/answers", _body(token)))
        if status == 201:
            answered[survey_id] = time.perf_counter()

    last_send = time.perf_counter()
    poll = asyncio.create_task(poller())
    t0 = time.perf_counter()
    tasks = []
    for i, (survey_id, token) in enumerate(issued):
        await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(send(survey_id, token)))
    await asyncio.gather(*tasks)
    last_send = time.perf_counter()
    done.set()
    await poll
    await conn.close()
    await commits.close()
    await client.close()
    bench.record_rss("feedback_api", api)
    bench.record_rss("feedback_worker", worker)
    bench.stop(api)
    bench.stop(worker)
    lags = [visible[s] - answered[s] for s in answered if s in visible]
    stats = summary_ms(lags)
    return Result.measured("feedback_answer_to_csat_p99", stats.get("p99_ms"), "ms", ("<=", 250), {
        "rate_per_s": rate, "seconds": seconds, "answered": len(answered), "visible": len(lags),
        "latency_ms": stats, "at": datetime.now(UTC).isoformat()})

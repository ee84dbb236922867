"""The closed loop on the real stack: a request closed through intake's API sends exactly one invitation through
the SMTP sink; answering through the link in that email records the response, moves CSAT and NPS, and a low score
opens a follow-up; a second closure within 7 days and a replayed intake topic send nothing more; the raw token is
nowhere in the database, the logs or the events."""

from __future__ import annotations

import logging

import asyncpg
import pytest
from feedback_story import LOW, close_request, eventually, token_in, where_the_survey_is

from opsat.common.db import asyncpg_dsn
from opsat.common.testing.infra import consume_all
from opsat.common.testing.infra import reset_group_to_earliest as replay_from_start
from opsat.intake.service import SERVICE as INTAKE
from opsat.sla_monitor.service import SERVICE as SLA

MAIL = "alice@acme.example"


async def processed(feedback, consumer: str) -> set[str]:  # type: ignore[no-untyped-def]
    rows = await feedback.rows("select event_id::text from reactions.processed_events where projection = $1", consumer)
    return {r[0] for r in rows}


async def closures(intake) -> set[str]:  # type: ignore[no-untyped-def]
    conn_rows = await intake_rows(intake, "select event_id::text from events where event_type = "
                                          "'opsat.intake.request.closed'")
    return {r[0] for r in conn_rows}


async def intake_rows(intake, sql: str):  # type: ignore[no-untyped-def]
    conn = await asyncpg.connect(asyncpg_dsn(intake.settings.database_url))
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def every_text_in_the_database(feedback) -> str:  # type: ignore[no-untyped-def]
    tables = await feedback.rows("select table_schema, table_name from information_schema.tables where table_schema in "
                                 "('public', 'read_model', 'reactions') and table_type = 'BASE TABLE'")
    dump = []
    for schema, name in tables:
        dump += [r[0] for r in await feedback.rows(f'select t::text from "{schema}"."{name}" t')]
    return "\n".join(dump)


async def test_a_closed_request_is_surveyed_once_by_email_and_a_low_answer_opens_a_follow_up(
        intake, feedback, smtp_sink, kafka_bootstrap, caplog, run_service):
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="opsat")
    await feedback.register("u-req", "acme", MAIL, language="en")
    sla = await run_service(SLA)
    async with intake.worker(only=("relay",)), sla.worker(), feedback.worker():
        first = await close_request(intake)
        [invitation] = await eventually(lambda: _some(smtp_sink.to(MAIL)), what="the invitation email",
                                        explain=lambda: where_the_survey_is(intake, feedback))
        assert first in invitation["Subject"] and invitation["To"] == MAIL

        # Same requester again within 7 days: the sampling rule says no.
        await close_request(intake)
        await eventually(lambda: _has(processed(feedback, "survey_on_close"), closures(intake)),
                         what="both closures handled")

        # Answer through the link in the email.
        token = token_in(invitation)
        form = await feedback.client.post("/api/v1/public/survey-form", json={"token": token})
        assert form.status_code == 200, form.text
        assert [d["label"] for d in form.json()["dimensions"]][0] == "Response speed"
        r = await feedback.answer(token, LOW, nps=3, comment="took three days to call back")
        assert r.status_code == 201, r.text
        assert r.json()["score"] == 37.0 and r.json()["band"] == "very_dissatisfied"
        assert (await feedback.answer(token, LOW, nps=3, comment="again")).status_code == 409

        staff = feedback.staff()
        csat = await eventually(lambda: _json(feedback, "/api/v1/satisfaction?group_by=team&group_by=engineer",
                                              staff), what="CSAT read model")
        assert csat == [{"team": "network", "engineer": "agent-1", "responses": 1, "csat_mean": 37.0, "satisfied": 0,
                         "promoters": 0, "detractors": 1, "satisfied_percent": 0.0, "nps": -100.0}]
        rate = (await feedback.client.get("/api/v1/response-rate?group_by=service", headers=staff)).json()
        assert rate == [{"service": "mail", "issued": 1, "answered": 1, "expired": 0, "response_rate_percent": 100.0}]
        dims = (await feedback.client.get("/api/v1/satisfaction/dimensions", headers=staff)).json()
        assert {d["dimension"]: d["mean_rating"] for d in dims} == {k: float(v) for k, v in LOW.items()}
        verbatim = (await feedback.client.get("/api/v1/verbatims", headers=staff)).json()
        assert [(v["comment"], v["requester_id"]) for v in verbatim] == [("took three days to call back", "u-req")]

        # Satisfaction against how the request was served (the SLA monitor's and intake's events).
        by_sla = await eventually(lambda: _json(feedback, "/api/v1/satisfaction/service-facts?by=sla", staff,
                                                lambda rows: rows[0]["sla"] == "met"), what="SLA facts")
        assert [(r["sla"], r["responses"], r["csat_mean"]) for r in by_sla] == [("met", 1, 37.0)]
        reopened = (await feedback.client.get("/api/v1/satisfaction/service-facts?by=reopened", headers=staff)).json()
        assert [(r["reopened"], r["responses"]) for r in reopened] == [(False, 1)]

        [follow_up] = await eventually(lambda: _json(feedback, "/api/v1/follow-ups?status=open", staff),
                                       what="a follow-up")
        assert follow_up["reasons"] == ["low_score", "detractor"] and follow_up["request_id"] == first
        assert follow_up["customer_id"] == "u-req" and follow_up["owner"] == "service-desk"
        fid = follow_up["followup_id"]
        for path, body in (("contact", {"note": "called alice"}), ("resolve", {"resolution": "new escalation rule"}),
                           ("customer-reaction", {"accepted": True})):
            r = await feedback.client.post(f"/api/v1/follow-ups/{fid}/{path}", json=body, headers=staff)
            assert r.status_code == 200, r.text
        done = await eventually(lambda: _status(feedback, fid, staff, "customer_confirmed"), what="confirmed")
        assert [h["status"] for h in done["history"]] == ["open", "contacted", "resolved", "customer_confirmed"]

    # Replay intake's topic with the dedupe table emptied too: the survey id derived from the closure holds.
    await feedback.rows("delete from reactions.processed_events where projection = 'survey_on_close'")
    config = feedback.service.runner_config(feedback.settings, "survey_on_close")
    await replay_from_start(kafka_bootstrap, config.group_id, feedback.settings.topic("intake"), INTAKE.partitions)
    async with feedback.worker():
        await eventually(lambda: _has(processed(feedback, "survey_on_close"), closures(intake)),
                         what="the replay handled")
        await eventually(lambda: _no_mail_pending(feedback), what="mail outbox idle")
    issued = await feedback.rows("select count(*) from events where event_type = 'opsat.feedback.survey.issued'")
    assert issued[0][0] == 1 and len(smtp_sink.to(MAIL)) == 1

    # The token is nowhere but in the email.
    assert token not in await every_text_in_the_database(feedback)
    assert token not in caplog.text
    appended = (await feedback.rows("select count(*) from events"))[0][0]
    published = await consume_all(kafka_bootstrap, feedback.settings.topic(), min_count=appended)
    assert len(published) >= appended
    assert published and not any(token.encode() in (r.value or b"") for r in published)


@pytest.mark.feedback_settings(sampling_rate=0.0)
async def test_no_email_when_the_sampling_rule_says_no(intake, feedback, smtp_sink):
    await feedback.register("u-req", "acme", MAIL)
    async with intake.worker(only=("relay",)), feedback.worker():
        await close_request(intake)
        await eventually(lambda: _has(processed(feedback, "survey_on_close"), closures(intake)),
                         what="the closure handled")
    assert not smtp_sink.messages
    assert (await feedback.rows("select count(*) from events where stream_type = 'survey'"))[0][0] == 0


async def _some(items: list) -> list | None:  # type: ignore[type-arg]
    return items or None


async def _has(seen, wanted) -> bool:  # type: ignore[no-untyped-def]
    have, want = await seen, await wanted
    return bool(want) and want <= have


async def _json(feedback, path: str, headers: dict, accept=bool):  # type: ignore[no-untyped-def]
    r = await feedback.client.get(path, headers=headers)
    assert r.status_code == 200, r.text
    return r.json() if r.json() and accept(r.json()) else None


async def _status(feedback, fid: str, headers: dict, status: str):  # type: ignore[no-untyped-def]
    r = await feedback.client.get(f"/api/v1/follow-ups/{fid}", headers=headers)
    return r.json() if r.status_code == 200 and r.json()["status"] == status else None


async def _no_mail_pending(feedback) -> bool:  # type: ignore[no-untyped-def]
    return not (await feedback.rows("select count(*) from mail_outbox where status = 'pending'"))[0][0]

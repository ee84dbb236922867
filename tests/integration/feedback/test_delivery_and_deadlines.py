"""Delivery and time on the real stack: an unreachable SMTP relay delays the invitation (attempts recorded and
visible on the survey) and it goes out once the relay is back; the reminder after 3 days and the expiry after 7
run on the deadlines table; complaints open follow-ups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from feedback_story import Feedback, SmtpSink, eventually, free_port, issue_survey, token_in

from opsat.feedback.service import SERVICE

NOW = datetime.now(UTC)


async def survey(feedback, survey_id: str, check):  # type: ignore[no-untyped-def]
    async def seen():  # type: ignore[no-untyped-def]
        r = await feedback.client.get(f"/api/v1/surveys/{survey_id}", headers=feedback.staff())
        return r.json() if r.status_code == 200 and check(r.json()) else None

    return await eventually(seen, what=f"survey {survey_id}")


async def test_an_unreachable_relay_delays_the_invitation_and_loses_nothing(run_service):
    port = free_port()  # nothing listens here yet
    feedback = await run_service(SERVICE, harness=Feedback, smtp_port=port, smtp_timeout_s=1.0,
                                 mail_poll_interval_s=0.2, mail_retry_base_s=0.3, mail_retry_max_s=0.6)
    async with feedback.worker():
        await issue_survey(feedback, "svy-wait", NOW, recipient="bob@acme.example")
        failing = await survey(feedback, "svy-wait",
                               lambda s: s["delivery"].get("invitation", {}).get("attempts", 0) >= 2)
        invitation = failing["delivery"]["invitation"]
        assert invitation["status"] == "pending" and invitation["last_outcome"] == "failed"
        assert "Connect" in invitation["last_error"] or "refused" in invitation["last_error"].lower()
        sink = SmtpSink(port).start()
        try:
            sent = await survey(feedback, "svy-wait", lambda s: s["delivery"]["invitation"]["status"] == "sent")
            assert [m["To"] for m in sink.messages] == ["bob@acme.example"]
            assert "请评价我们的服务" in sink.messages[0]["Subject"]  # the contact's language (zh)
        finally:
            sink.stop()
    attempts = await feedback.rows("select outcome from mail_attempts order by id")
    assert [a[0] for a in attempts][-1] == "sent" and len(attempts) == sent["delivery"]["invitation"]["attempts"]
    assert all(a[0] == "failed" for a in attempts[:-1])


async def test_reminder_after_three_days_and_expiry_after_seven_on_the_deadlines(feedback, smtp_sink):
    await issue_survey(feedback, "svy-quiet", NOW - timedelta(days=4), recipient="carol@acme.example")
    await issue_survey(feedback, "svy-gone", NOW - timedelta(days=8), recipient="dave@acme.example")
    await issue_survey(feedback, "svy-none", NOW, recipient=None)
    async with feedback.worker():
        reminded = await survey(feedback, "svy-quiet",  # both of carol's emails out before the sink is read
                                lambda s: all(s["delivery"].get(m, {}).get("status") == "sent"
                                              for m in ("invitation", "reminder")))
        assert reminded["reminded_at"] is not None and reminded["status"] == "issued"
        expired = await survey(feedback, "svy-gone", lambda s: s["status"] == "expired")
        assert expired["delivery"] == {}  # its link is dead: no email sent
        nowhere = await survey(feedback, "svy-none", lambda s: "invitation" in s["delivery"])
        assert nowhere["delivery"]["invitation"]["status"] == "undeliverable"
    subjects = sorted((m["To"], m["Subject"][:2]) for m in smtp_sink.messages)
    assert subjects == [("carol@acme.example", "提醒"), ("carol@acme.example", "请评")]
    rate = (await feedback.client.get("/api/v1/response-rate", headers=feedback.staff())).json()
    assert rate == [{"issued": 3, "answered": 0, "expired": 1, "response_rate_percent": 0.0}]


async def test_a_customer_files_a_complaint_and_staff_close_the_loop(feedback):
    customer = feedback.token("u-req", "acme", "requester")
    r = await feedback.client.post("/api/v1/complaints", json={"complaint": "nobody called back", "team": "network"},
                                   headers=customer)
    assert r.status_code == 201, r.text
    fid = r.json()["followup_id"]
    assert (await feedback.client.post("/api/v1/complaints", json={"complaint": " "}, headers=customer)
            ).status_code == 422
    assert (await feedback.client.post(f"/api/v1/follow-ups/{fid}/resolve", json={"resolution": "x"},
                                       headers=customer)).status_code == 403
    staff = feedback.staff()
    assert (await feedback.client.post(f"/api/v1/follow-ups/{fid}/resolve", json={"resolution": "x"},
                                       headers=staff)).status_code == 409  # open: contact the customer first
    for path, who, body in (("contact", staff, {"note": "called"}), ("resolve", staff, {"resolution": "apologised"}),
                            ("customer-reaction", customer, {"accepted": False, "comment": "still waiting"})):
        r = await feedback.client.post(f"/api/v1/follow-ups/{fid}/{path}", json=body, headers=who)
        assert r.status_code == 200, (path, r.text)
    async with feedback.worker(only=("relay", "projection")):
        async def reopened():  # type: ignore[no-untyped-def]
            r = await feedback.client.get(f"/api/v1/follow-ups/{fid}", headers=customer)
            return r.json() if r.status_code == 200 and len(r.json()["history"]) == 4 else None

        row = await eventually(reopened, what="the follow-up read model")
    assert row["status"] == "open" and row["source"] == "complaint" and row["customer_accepted"] is False
    listed = (await feedback.client.get("/api/v1/follow-ups?source=complaint", headers=staff)).json()
    assert [f["followup_id"] for f in listed] == [fid]
    other = feedback.token("eve", "globex", "requester")
    assert (await feedback.client.get(f"/api/v1/follow-ups/{fid}", headers=other)).status_code == 404


async def test_a_relationship_campaign_surveys_each_registered_contact_once(feedback, smtp_sink):
    await feedback.register("u-ann", "acme", "ann@acme.example", language="zh")
    await feedback.register("u-ben", "globex", "ben@globex.example", language="en")
    manager = feedback.token("boss", "ops", "manager")
    body = {"name": "2026 Q4", "contact_ids": ["u-ann", "u-ben", "u-unknown"]}
    r = await feedback.client.post("/api/v1/campaigns/q4-2026/launch", json=body, headers=manager)
    assert r.status_code == 200, r.text
    again = await feedback.client.post("/api/v1/campaigns/q4-2026/launch", json=body, headers=manager)
    assert again.status_code == 409
    bad = await feedback.client.post("/api/v1/campaigns/q4-empty/launch", json={**body, "contact_ids": []},
                                     headers=manager)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "contact_ids"
    assert (await feedback.client.post("/api/v1/campaigns/q4-x/launch", json=body,
                                       headers=feedback.token("bob", "ops", "agent"))).status_code == 403
    async with feedback.worker():
        await eventually(lambda: _at_least(smtp_sink.messages, 2), what="two campaign emails")
        ann = smtp_sink.to("ann@acme.example")[0]
        assert ann["Subject"] == "运维服务满意度调查"
        r = await feedback.answer(token_in(ann), {"response_speed": 5, "professionalism": 4, "attitude": 5,
                                                  "resolution": 4}, nps=8)
        assert r.status_code == 201, r.text

        async def rate():  # type: ignore[no-untyped-def]
            rows = (await feedback.client.get("/api/v1/response-rate?group_by=campaign",
                                              headers=feedback.staff())).json()
            return rows if rows and rows[0]["answered"] == 1 else None

        assert await eventually(rate, what="the campaign's response rate") == [
            {"campaign": "q4-2026", "issued": 2, "answered": 1, "expired": 0, "response_rate_percent": 50.0}]
    assert sorted(m["To"] for m in smtp_sink.messages) == ["ann@acme.example", "ben@globex.example"]


async def _at_least(items: list, n: int) -> bool:  # type: ignore[type-arg]
    return len(items) >= n


async def test_a_mail_round_reads_only_due_messages_and_unrecorded_attempts_however_many_were_sent(run_service):
    from sqlalchemy import text

    from opsat.common.db import create_engine
    from opsat.feedback.app.delivery import due_messages, unrecorded_attempts

    feedback = await run_service(SERVICE, harness=Feedback)
    engine = create_engine(feedback.settings.database_url)
    try:
        async with engine.begin() as conn:  # a year of mail: 20,000 messages sent, each attempt recorded
            await conn.execute(text(
                "insert into mail_outbox (survey_id, purpose, language, expires_at, status, next_attempt_at, sent_at)"
                " select 'svy-' || n, 'invitation', 'en', now(), 'sent', now() - interval '1 day', now()"
                " from generate_series(1, 20000) n"))
            await conn.execute(text(
                "insert into mail_attempts (message_id, attempt, at, outcome, recorded)"
                " select id, 1, now(), 'sent', true from mail_outbox"))
            await conn.execute(text(
                "insert into mail_outbox (survey_id, purpose, language, expires_at, status, next_attempt_at)"
                " values ('svy-due', 'invitation', 'en', now() + interval '7 days', 'pending', now())"))
        async with engine.begin() as conn:
            await conn.execute(text("analyze mail_outbox"))
            await conn.execute(text("analyze mail_attempts"))
        async with engine.begin() as conn:
            before = await _reads(conn)
            due = (await conn.execute(due_messages(datetime.now(UTC), 20))).mappings().all()
            unrecorded = (await conn.execute(unrecorded_attempts(100))).all()
            after = await _reads(conn)
    finally:
        await engine.dispose()
    assert [m["survey_id"] for m in due] == ["svy-due"] and unrecorded == []
    for table in ("mail_outbox", "mail_attempts"):  # through the partial indexes: no pass over what was sent
        assert after[table][0] - before[table][0] == 0, f"{table} read by a sequential scan"
        assert after[table][1] - before[table][1] <= 10, f"{table}: every row fetched through an index"


async def _reads(conn) -> dict[str, tuple[int, int]]:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    rows = await conn.execute(text("select relname, seq_tup_read, coalesce(idx_tup_fetch, 0)"
                                   " from pg_stat_xact_user_tables where relname in ('mail_outbox', 'mail_attempts')"))
    return {r[0]: (r[1], r[2]) for r in rows}

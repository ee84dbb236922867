"""Delivery of survey emails over SMTP from an outbox of messages, with retries and a record of every attempt.

`SurveyScheduler` queues a message per survey and purpose (invitation, reminder) in `mail_outbox` in the same
transaction that records the event as applied, so a message is queued exactly once. `MailSender`, a worker
loop, takes due messages with FOR UPDATE SKIP LOCKED (replicas share them), renders the email in the
recipient's language with the token derived at that moment (never stored), hands it to the relay and records
the attempt in `mail_attempts`. A relay that is down or answers 4xx delays the message (doubling back-off up to
`mail_retry_max_s`, for ever: a survey is never dropped); a 5xx refusal of the recipient is a bounce. Each
attempt is then recorded on the survey (`MailAttempted`) so a failed delivery shows there; a crash between
sending and committing can send one message twice, never none.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosmtplib
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from opsat.common.commands import CommandHandler, CommandMeta
from opsat.common.domain import SYSTEM_ACTOR, DomainError
from opsat.feedback.domain import commands as c
from opsat.feedback.domain import events as ev
from opsat.feedback.domain import mail, tokens
from opsat.feedback.settings import FeedbackSettings

log = logging.getLogger(__name__)

mail_tables = MetaData()
mail_outbox = Table(
    "mail_outbox", mail_tables,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("survey_id", String, nullable=False),
    Column("purpose", String, nullable=False),  # invitation | reminder
    Column("recipient", String),  # personal data; None: no address known
    Column("language", String, nullable=False),
    Column("request_id", String),  # None: a campaign's survey
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("status", String, nullable=False),  # pending | sent | bounced | undeliverable | cancelled
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text),
    Column("sent_at", DateTime(timezone=True)),
    UniqueConstraint("survey_id", "purpose"),
    # What each mail round asks for: the due pending messages, not every message ever sent (migration 0004).
    Index("mail_outbox_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
)
mail_attempts = Table(
    "mail_attempts", mail_tables,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("message_id", BigInteger, ForeignKey("mail_outbox.id"), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("outcome", String, nullable=False),  # sent | failed | bounced | undeliverable
    Column("error", Text),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("recorded", Boolean, nullable=False, server_default="false"),  # on the survey as MailAttempted
    Index("mail_attempts_unrecorded", "id", postgresql_where=text("recorded is false")),
)
O, A = mail_outbox.c, mail_attempts.c
PENDING = literal_column("'pending'")  # a constant, not a parameter: the partial index's predicate holds for any plan


def due_messages(now: datetime, limit: int) -> Select[Any]:
    """The pending messages due by `now`, locked for this round (through `mail_outbox_due`)."""
    return (select(mail_outbox).where(O.status == PENDING, O.next_attempt_at <= now)
            .order_by(O.next_attempt_at).limit(limit).with_for_update(skip_locked=True))


def unrecorded_attempts(limit: int) -> Select[Any]:
    """Attempts not yet on their survey, oldest first (through `mail_attempts_unrecorded`)."""
    return (select(A.id, A.attempt, A.at, A.outcome, A.error, A.next_attempt_at, O.survey_id, O.purpose)
            .join(mail_outbox, O.id == A.message_id).where(A.recorded.is_(False)).order_by(A.id).limit(limit))


async def enqueue(conn: AsyncConnection, survey: ev.SurveyIssued, purpose: str, at: datetime) -> None:
    await conn.execute(insert(mail_outbox).values(
        survey_id=survey.survey_id, purpose=purpose, recipient=survey.recipient, language=survey.language,
        request_id=survey.request_id, expires_at=survey.expires_at, status="pending", next_attempt_at=at,
    ).on_conflict_do_nothing())


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MailSender:
    def __init__(self, settings: FeedbackSettings, engine: AsyncEngine, handler: CommandHandler,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        self.settings, self.engine, self.handler, self.clock = settings, engine, handler, clock
        settings.token_key_bytes()  # no key, no worker: fail at start, not at the first survey

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            busy = False
            try:
                busy = await self.send_due() > 0
                await self.record_attempts()
            except Exception:  # database away: keep polling
                log.warning("mail round failed", exc_info=True)
            if not busy:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.settings.mail_poll_interval_s)
                except TimeoutError:
                    pass

    async def send_due(self, limit: int = 20) -> int:
        """Attempt up to `limit` due messages; returns how many were attempted."""
        now = self.clock()
        async with self.engine.begin() as conn:
            rows = (await conn.execute(due_messages(now, limit))).mappings().all()
            for row in rows:
                if row["expires_at"] <= now:  # a dead link helps nobody
                    await conn.execute(update(mail_outbox).where(O.id == row["id"]).values(status="cancelled"))
                    continue
                await self._attempt(conn, row, now)
        return len(rows)

    async def _attempt(self, conn: AsyncConnection, row: Any, now: datetime) -> None:
        attempt = row["attempts"] + 1
        outcome, error, next_at = await self._send(row)
        if outcome == "failed":
            delay = min(self.settings.mail_retry_base_s * 2 ** (attempt - 1), self.settings.mail_retry_max_s)
            next_at = now + timedelta(seconds=delay)
            log.warning("survey %s %s: delivery attempt %d failed (%s); next at %s", row["survey_id"],
                        row["purpose"], attempt, error, next_at.isoformat())
        status = {"sent": "sent", "failed": "pending", "bounced": "bounced", "undeliverable": "undeliverable"}[outcome]
        await conn.execute(update(mail_outbox).where(O.id == row["id"]).values(
            attempts=attempt, status=status, last_error=error, next_attempt_at=next_at or row["next_attempt_at"],
            sent_at=now if outcome == "sent" else None))
        await conn.execute(mail_attempts.insert().values(message_id=row["id"], attempt=attempt, at=now,
                                                         outcome=outcome, error=error, next_attempt_at=next_at))

    async def _send(self, row: Any) -> tuple[str, str | None, datetime | None]:
        if not row["recipient"]:
            return "undeliverable", "no e-mail address is registered for the requester", None
        token = tokens.token_for(self.settings.token_key_bytes(), row["survey_id"])
        message = mail.render(
            mail.SurveyMail(purpose=row["purpose"], language=row["language"], recipient=row["recipient"],
                            sender=self.settings.mail_from, request_id=row["request_id"],
                            expires_at=row["expires_at"]),
            mail.answer_link(self.settings.answer_base_url, token),
            f"<{row['survey_id']}.{row['purpose']}.{uuid.uuid4().hex[:8]}@opsat.feedback>")
        password = self.settings.smtp_password.get_secret_value() if self.settings.smtp_password else None
        try:
            await aiosmtplib.send(message, hostname=self.settings.smtp_host, port=self.settings.smtp_port,
                                  username=self.settings.smtp_username, password=password,
                                  start_tls=self.settings.smtp_starttls, timeout=self.settings.smtp_timeout_s)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if all(500 <= code < 600 for code in codes):
                return "bounced", f"the relay refused the recipient ({', '.join(map(str, codes))})", None
            return "failed", f"the relay refused the recipient for now ({', '.join(map(str, codes))})", None
        except aiosmtplib.SMTPResponseException as exc:
            return "failed", f"SMTP {exc.code}: {exc.message}"[:500], None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return "failed", f"{type(exc).__name__}: {exc}"[:500], None
        return "sent", None, None

    async def record_attempts(self, limit: int = 100) -> None:
        """Each attempt not yet on its survey becomes a MailAttempted event there (an Idempotency-Key per attempt)."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(unrecorded_attempts(limit))).mappings().all()
        for row in rows:
            command = c.RecordMailAttempt(survey_id=row["survey_id"], purpose=row["purpose"], attempt=row["attempt"],
                                          outcome=row["outcome"], error=row["error"],
                                          next_attempt_at=row["next_attempt_at"])
            try:
                await self.handler.execute(command, SYSTEM_ACTOR, CommandMeta(
                    correlation_id=f"mail:{row['survey_id']}", idempotency_key=f"mail-attempt:{row['id']}",
                    fingerprint=row["id"]))
            except DomainError as exc:  # the survey is gone: nothing to record it on
                log.info("mail attempt %s not recorded: %s", row["id"], exc.detail)
            async with self.engine.begin() as conn:
                await conn.execute(update(mail_attempts).where(A.id == row["id"]).values(recorded=True))

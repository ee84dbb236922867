"""Closed loop (handbook 5.4): a follow-up is opened by a low score, an NPS detractor or a complaint, has an
owner and a due date, and moves open -> contacted -> resolved -> customer_confirmed. It closes only when the
customer's reaction is recorded and accepts the resolution; a rejection opens it again with a new due time.
Unresolved at its due time, it is flagged overdue once per due time."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from opsat.common.domain import AlreadyExists, DomainEvent, InvalidInput, InvalidTransition, NotDueYet, NotFound
from opsat.feedback.domain import commands as c
from opsat.feedback.domain import events as ev

STATUSES = ("open", "contacted", "resolved", "customer_confirmed")
REASONS = ("low_score", "detractor", "complaint")
MAX_TEXT = 4000

# status -> the statuses a command may move it from
ALLOWED_FROM: dict[type, tuple[str, ...]] = {
    c.RecordContact: ("open", "contacted"),
    c.ResolveFollowUp: ("contacted",),
    c.RecordCustomerReaction: ("resolved",),
}


@dataclass(frozen=True)
class FollowUp:
    followup_id: str
    organisation_id: str
    owner: str
    due_at: datetime
    status: str = "open"
    overdue: bool = False


def evolve(state: FollowUp | None, event: DomainEvent) -> FollowUp:
    match event:
        case ev.FollowUpOpened():
            return FollowUp(event.followup_id, event.organisation_id, event.owner, event.due_at)
    if state is None:  # another kind of stream under this id: no follow-up
        raise NotFound("follow-up not found", field="followup_id")
    match event:
        case ev.FollowUpContacted():
            return replace(state, status="contacted")
        case ev.FollowUpResolved():
            return replace(state, status="resolved")
        case ev.CustomerReacted() if event.accepted:
            return replace(state, status="customer_confirmed")
        case ev.CustomerReacted():  # open again, due anew: the overdue flag is for the new due time
            return replace(state, status="open", overdue=False, due_at=event.due_at or state.due_at)
        case ev.FollowUpOverdue():
            return replace(state, overdue=True)
    raise TypeError(f"{type(event).__name__} is no follow-up event")


def _text(value: str | None, field: str, *, required: bool) -> str | None:
    text = (value or "").strip()
    if required and not text:
        raise InvalidInput("say what happened", field=field)
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"at most {MAX_TEXT} characters", field=field)
    return text or None


def decide(state: FollowUp | None, command: Any, now: datetime, by: str, *, default_owner: str,
           due_after: timedelta) -> list[DomainEvent]:
    if isinstance(command, c.OpenFollowUp):
        if state is not None:
            raise AlreadyExists(f"follow-up {command.followup_id} is open already", field="followup_id")
        reasons = list(dict.fromkeys(command.reasons))
        if not reasons or any(r not in REASONS for r in reasons):
            raise InvalidInput(f"reasons are some of {', '.join(REASONS)}", field="reasons")
        complaint = _text(command.complaint, "complaint", required=command.source == "complaint")
        return [ev.FollowUpOpened(
            followup_id=command.followup_id, at=now, by=by, organisation_id=command.organisation_id,
            source=command.source, reasons=reasons, survey_id=command.survey_id, request_id=command.request_id,
            customer_id=command.customer_id, team=command.team, assignee=command.assignee, complaint=complaint,
            owner=command.owner or default_owner, due_at=now + due_after)]
    if state is None:
        raise NotFound("follow-up not found", field="followup_id")
    if isinstance(command, c.MarkFollowUpOverdue):
        if state.overdue or state.status in ("resolved", "customer_confirmed"):
            raise InvalidTransition("only an unresolved follow-up becomes overdue, once")
        if now < state.due_at:
            raise NotDueYet("the follow-up is not due yet", due_at=state.due_at)
        return [ev.FollowUpOverdue(followup_id=state.followup_id, at=now, by=by, due_at=state.due_at)]
    allowed = ALLOWED_FROM[type(command)]
    if state.status not in allowed:
        raise InvalidTransition(f"a follow-up that is {state.status} cannot take {type(command).__name__}; "
                                f"it must be {' or '.join(allowed)}")
    match command:
        case c.RecordContact():
            return [ev.FollowUpContacted(followup_id=state.followup_id, at=now, by=by,
                                         note=_text(command.note, "note", required=True))]
        case c.ResolveFollowUp():
            return [ev.FollowUpResolved(followup_id=state.followup_id, at=now, by=by,
                                        resolution=_text(command.resolution, "resolution", required=True))]
        case c.RecordCustomerReaction():
            return [ev.CustomerReacted(followup_id=state.followup_id, at=now, by=by, accepted=command.accepted,
                                       comment=_text(command.comment, "comment", required=not command.accepted),
                                       due_at=None if command.accepted else now + due_after)]
    raise TypeError(f"no follow-up rule for {type(command).__name__}")

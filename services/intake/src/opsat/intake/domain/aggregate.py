"""The service request aggregate: `decide` (command → events or a domain error) and `evolve` (event → state).

Reading guide: `_RULES` near the end says, for every command, who may issue it and from which
statuses; `decide` applies those generic checks and then calls the command's small handler, which
validates the input and the remaining business rules. `evolve` is the only place that builds state.
Pure: no I/O and no clock; the time comes from `CommandContext.now`.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any, Literal, TypeVar

from opsat.common.calendar import business_days_from_working_time
from opsat.common.domain import (
    AlreadyExists,
    CommandContext,
    Conflict,
    DomainEvent,
    Forbidden,
    InvalidInput,
    InvalidTransition,
    NotDueYet,
    NotFound,
    Role,
)
from opsat.intake.domain import commands as c
from opsat.intake.domain import events as e
from opsat.intake.domain.policy import IntakePolicy
from opsat.intake.domain.values import (
    MAX_EFFORT_HOURS,
    MAX_MINUTES_PER_ENTRY,
    MAX_WATCHERS,
    TEXT_LIMITS,
    ApprovalState,
    ChangeState,
    Channel,
    CloseReason,
    Link,
    LinkType,
    Priority,
    RequestKind,
    Requirement,
    RequirementChange,
    Status,
)

# Who does what. Staff are the service provider's people; service accounts only run system commands.
STAFF = frozenset({Role.agent, Role.team_lead, Role.manager, Role.admin})
APPROVERS = frozenset({Role.manager, Role.admin})
SYSTEM = frozenset({Role.service})

OPEN = frozenset({Status.submitted, Status.accepted, Status.in_progress, Status.awaiting_customer, Status.reopened})
FINISHED = frozenset({Status.closed, Status.rejected, Status.cancelled})


@dataclass(frozen=True)
class ServiceRequest:
    """The state of one request, rebuilt from its events by `evolve`."""

    id: str
    kind: RequestKind
    channel: Channel
    title: str
    description: str
    impact: int
    urgency: int
    priority: Priority
    status: Status
    requester_id: str
    organisation_id: str
    submitted_at: datetime
    service: str | None = None
    customer_tier: str = "standard"
    priority_overridden: bool = False
    team: str | None = None
    assignee: str | None = None
    watchers: frozenset[str] = frozenset()
    requires_requirement_confirmation: bool = False
    requirement: Requirement | None = None
    requirement_changes: Mapping[str, RequirementChange] = field(default_factory=dict, hash=False)
    approval: ApprovalState = ApprovalState.not_required
    links: frozenset[Link] = frozenset()
    time_logged_minutes: Mapping[str, int] = field(default_factory=dict, hash=False)  # agent id → minutes
    resolved_at: datetime | None = None
    auto_close_due_at: datetime | None = None
    closed_at: datetime | None = None
    close_reason: CloseReason | None = None
    reopen_count: int = 0
    message_ids: frozenset[str] = frozenset()  # ids of replies and internal notes, unique per request
    time_entry_ids: frozenset[str] = frozenset()

    @property
    def requirement_confirmed(self) -> bool:
        return self.requirement is not None and self.requirement.confirmed


Handler = Callable[[ServiceRequest, Any, CommandContext, IntakePolicy], list[DomainEvent]]


@dataclass(frozen=True)
class _Rule:
    handle: Handler
    staff_roles: frozenset[Role]  # roles that may issue the command on any request
    # What a requester may do: nothing, act on any request of their organisation, or only on their own.
    requester: Literal["none", "org", "own"] = "none"
    from_statuses: frozenset[Status] | None = None  # None: any status


# --- decide ----------------------------------------------------------------------------------------


def decide(
    state: ServiceRequest | None, command: Any, ctx: CommandContext, policy: IntakePolicy
) -> list[DomainEvent]:
    """The events that `command` causes, or a DomainError. `state` is None for a request not yet submitted."""
    rule = _RULES.get(type(command))
    if rule is None:
        raise TypeError(f"not an intake command: {type(command).__name__}")
    if ctx.now.tzinfo is None or ctx.now.utcoffset() is None:
        raise ValueError("CommandContext.now must be timezone-aware")
    name = type(command).__name__
    as_staff = ctx.actor.has(*rule.staff_roles)
    if not as_staff and not (rule.requester != "none" and ctx.actor.has(Role.requester)):
        raise Forbidden(f"{name} is not allowed for your role")
    if isinstance(command, c.SubmitRequest):
        return _submit(state, command, ctx, policy)
    if state is not None and state.id != command.request_id:
        raise ValueError(f"state {state.id} does not belong to command for {command.request_id}")
    # Another organisation's request does not exist for a requester (or a service account not acting for it).
    if state is None or not ctx.actor.sees(state.organisation_id):
        raise NotFound(f"service request {command.request_id!r} not found")
    if not as_staff and rule.requester == "own" and state.requester_id != ctx.actor.id:
        raise Forbidden(f"only the requester of this request may {name}")
    if rule.from_statuses is not None and state.status not in rule.from_statuses:
        raise InvalidTransition(
            f"{name} is not allowed while the request is {state.status.value}; "
            f"allowed from: {_listing(rule.from_statuses)}"
        )
    return rule.handle(state, command, ctx, policy)


def _submit(
    state: ServiceRequest | None, cmd: c.SubmitRequest, ctx: CommandContext, policy: IntakePolicy
) -> list[DomainEvent]:
    as_staff = ctx.actor.has(*(STAFF | SYSTEM))  # staff and monitoring submit on a requester's behalf
    if state is not None:
        raise AlreadyExists(f"service request {cmd.request_id!r} already exists", field="request_id")
    if not as_staff and cmd.requester_id != ctx.actor.id:
        raise Forbidden("requesters submit in their own name", field="requester_id")
    if not as_staff and cmd.organisation_id != ctx.actor.organisation:
        raise Forbidden("requesters submit for their own organisation", field="organisation_id")
    if not ctx.actor.sees(cmd.organisation_id):
        raise Forbidden("you do not act for this organisation", field="organisation_id")
    # Fields that drive service levels and routing are staff's to set, or come from configuration.
    for name in ("customer_tier", "team"):
        if not as_staff and getattr(cmd, name) is not None:
            raise Forbidden(f"{name} is set by staff", field=name)
    kind = _enum(RequestKind, cmd.kind, "kind")
    return [
        e.RequestSubmitted(
            request_id=_ident(cmd.request_id, "request_id"),
            at=ctx.now,
            by=ctx.actor.id,
            kind=kind,
            channel=_enum(Channel, cmd.channel, "channel"),
            title=_title(cmd.title),
            description=_text(cmd.description, "description", required=False),
            impact=cmd.impact,
            urgency=cmd.urgency,
            priority=policy.priority_for(cmd.impact, cmd.urgency),
            requester_id=_ident(cmd.requester_id, "requester_id"),
            organisation_id=_ident(cmd.organisation_id, "organisation_id"),
            service=_optional_ident(cmd.service, "service"),
            customer_tier=policy.customer_tier if cmd.customer_tier is None else _ident(cmd.customer_tier,
                                                                                         "customer_tier"),
            team=_optional_ident(cmd.team, "team"),
            watchers=_watchers(cmd.watchers),
            requires_approval=_requires_approval(kind, cmd.requires_approval, policy),
            requires_requirement_confirmation=kind in policy.requirement_confirmation_kinds,
        )
    ]


def _requires_approval(kind: RequestKind, asked: bool | None, policy: IntakePolicy) -> bool:
    if asked is not None and not isinstance(asked, bool):
        raise InvalidInput("requires_approval must be true, false or absent", field="requires_approval")
    if kind in policy.approval_required_kinds:
        if asked is False:
            raise InvalidInput(f"{kind.value} requests always need approval", field="requires_approval")
        return True
    return bool(asked)


def _watchers(watchers: Iterable[str]) -> tuple[str, ...]:
    if isinstance(watchers, str):
        raise InvalidInput("watchers must be a list of user ids", field="watchers")
    ids = tuple(_ident(w, "watchers") for w in watchers)
    if len(ids) > MAX_WATCHERS:
        raise InvalidInput(f"at most {MAX_WATCHERS} watchers", field="watchers")
    if len(set(ids)) != len(ids):
        raise InvalidInput("watchers must not repeat", field="watchers")
    return ids


# --- life cycle handlers ---------------------------------------------------------------------------


def _accept(state: ServiceRequest, cmd: c.AcceptRequest, ctx: CommandContext, _: IntakePolicy) -> list[DomainEvent]:
    team = cmd.team if cmd.team is not None else state.team
    if team is None:
        raise InvalidInput("name the team that accepts the request", field="team")
    assignee = cmd.assignee if cmd.assignee is not None else state.assignee
    return [
        e.RequestAccepted(
            **_meta(state, ctx), team=_ident(team, "team"), assignee=_optional_ident(assignee, "assignee")
        )
    ]


def _reject(state: ServiceRequest, cmd: c.RejectRequest, ctx: CommandContext, _: IntakePolicy) -> list[DomainEvent]:
    return [e.RequestRejected(**_meta(state, ctx), reason=_text(cmd.reason, "reason"))]


def _start_work(state: ServiceRequest, cmd: c.StartWork, ctx: CommandContext, _: IntakePolicy) -> list[DomainEvent]:
    _expect_confirmed_requirement(state, "work starts")
    if state.approval is ApprovalState.pending:
        raise Conflict("the request awaits a manager's approval", code="approval_pending")
    return [e.WorkStarted(**_meta(state, ctx))]


def _expect_confirmed_requirement(state: ServiceRequest, before: str) -> None:
    if state.requires_requirement_confirmation and not state.requirement_confirmed:
        version = f" version {state.requirement.version}" if state.requirement else ""
        raise Conflict(
            f"the requester must confirm the requirement{version} before {before}", code="requirement_not_confirmed"
        )


def _request_info(
    state: ServiceRequest, cmd: c.RequestCustomerInfo, ctx: CommandContext, _: IntakePolicy
) -> list[DomainEvent]:
    return [e.CustomerInfoRequested(**_meta(state, ctx), question=_text(cmd.question, "question"))]


def _provide_info(
    state: ServiceRequest, cmd: c.ProvideCustomerInfo, ctx: CommandContext, _: IntakePolicy
) -> list[DomainEvent]:
    return [e.CustomerInfoProvided(**_meta(state, ctx), answer=_text(cmd.answer, "answer"))]


def _resolve(
    state: ServiceRequest, cmd: c.ResolveRequest, ctx: CommandContext, policy: IntakePolicy
) -> list[DomainEvent]:
    """Deliver. Refused while a requirement change awaits its decision: the delivery is judged against the
    requirement, so the approver decides first (rejecting it if it no longer matters). Withdrawing it here
    would drop the proposer's request without anyone deciding on it. Also refused while an approved change
    awaits the requester's confirmation. The auto-close is due at the same time of day N working days after
    the first working moment at or after the resolve: always in working hours, and never earlier for a
    later resolve."""
    pending = sorted(i for i, ch in state.requirement_changes.items() if ch.state in _UNDECIDED_CHANGE)
    if pending:
        raise Conflict(
            f"requirement change {', '.join(pending)} awaits a decision; approve or reject it before resolving",
            code="requirement_change_pending",
        )
    _expect_confirmed_requirement(state, "delivery")
    due = business_days_from_working_time(cmd.calendar or policy.calendar, ctx.now, policy.auto_close_business_days)
    return [e.RequestResolved(**_meta(state, ctx), solution=_text(cmd.solution, "solution"), auto_close_due_at=due)]


def _accept_delivery(
    state: ServiceRequest, cmd: c.AcceptDelivery, ctx: CommandContext, _: IntakePolicy
) -> list[DomainEvent]:
    comment = _optional_text(cmd.comment, "comment")
    return [e.RequestClosed(**_meta(state, ctx), reason=CloseReason.accepted, comment=comment)]


def _reject_delivery(
    state: ServiceRequest, cmd: c.RejectDelivery, ctx: CommandContext, _: IntakePolicy
) -> list[DomainEvent]:
    return [_reopened(state, ctx, _text(cmd.reason, "reason"))]


def _reopen(
    state: ServiceRequest, cmd: c.ReopenRequest, ctx: CommandContext, policy: IntakePolicy
) -> list[DomainEvent]:
    reason = _text(cmd.reason, "reason")
    window_ends = _reopen_window_start(state) + timedelta(days=policy.reopen_window_days)
    if ctx.now > window_ends:
        raise Conflict(
            f"the reopen window ended at {window_ends.isoformat()}; submit a new request instead",
            code="reopen_window_expired",
        )
    return [_reopened(state, ctx, reason)]


def _reopen_window_start(state: ServiceRequest) -> datetime:
    """The window counts from the resolve (DOMAIN: "within N days of resolve"), except after an auto-close:
    then it counts from the close, which can come later than the window's end across a long holiday; the
    requester, who did not answer the delivery, still gets the whole window to reopen."""
    resolved_at = _resolved_at(state)
    if state.close_reason is CloseReason.auto_closed and state.closed_at is not None:
        return max(resolved_at, state.closed_at)
    return resolved_at


def _reopened(state: ServiceRequest, ctx: CommandContext, reason: str) -> e.RequestReopened:
    return e.RequestReopened(
        **_meta(state, ctx), reason=reason, from_status=state.status, reopen_count=state.reopen_count + 1
    )


def _auto_close(
    state: ServiceRequest, cmd: c.AutoCloseRequest, ctx: CommandContext, _: IntakePolicy
) -> list[DomainEvent]:
    # The due time was fixed at resolve (and scheduled from that event); a later policy change does not move it.
    due = state.auto_close_due_at
    if due is None:
        raise Conflict("auto-close is due at unknown, not yet", code="auto_close_not_due")
    if ctx.now < due:
        raise NotDueYet(f"auto-close is due at {due.isoformat()}, not yet", due_at=due, code="auto_close_not_due")
    return [e.RequestClosed(**_meta(state, ctx), reason=CloseReason.auto_closed, auto_close_due_at=due)]


def _cancel(state: ServiceRequest, cmd: c.CancelRequest, ctx: CommandContext, _: IntakePolicy) -> list[DomainEvent]:
    return [e.RequestCancelled(**_meta(state, ctx), reason=_text(cmd.reason, "reason"), from_status=state.status)]


def _override_priority(
    state: ServiceRequest, cmd: c.OverridePriority, ctx: CommandContext, _: IntakePolicy
) -> list[DomainEvent]:
    priority = _enum(Priority, cmd.priority, "priority")
    reason = _text(cmd.reason, "reason")
    if priority is state.priority:
        raise Conflict(f"the priority already is {priority.value}", code="priority_unchanged")
    return [
        e.PriorityOverridden(**_meta(state, ctx), priority=priority, previous_priority=state.priority, reason=reason)
    ]


# --- approval --------------------------------------------------------------------------------------


def _approve(state: ServiceRequest, cmd: c.ApproveRequest, ctx: CommandContext, _: IntakePolicy) -> list[DomainEvent]:
    _expect_pending_approval(state)
    if ctx.actor.id == state.requester_id:
        raise Forbidden("nobody approves their own request")  # segregation of duties
    return [e.RequestApproved(**_meta(state, ctx), comment=_optional_text(cmd.comment, "comment"))]


def _decline(state: ServiceRequest, cmd: c.DeclineRequest, ctx: CommandContext, _: IntakePolicy) -> list[DomainEvent]:
    reason = _text(cmd.reason, "reason")
    _expect_pending_approval(state)
    return [e.RequestDeclined(**_meta(state, ctx), reason=reason)]


def _expect_pending_approval(state: ServiceRequest) -> None:
    if state.approval is not ApprovalState.pending:
        raise Conflict(f"no approval is pending (approval is {state.approval.value})", code="approval_not_pending")


# --- requirement -----------------------------------------------------------------------------------


def _record_requirement(
    state: ServiceRequest, cmd: c.RecordRequirement, ctx: CommandContext, _: IntakePolicy
) -> list[DomainEvent]:
    if state.requirement_confirmed:
        raise Conflict(
            "the requirement is confirmed; propose a requirement change instead", code="requirement_confirmed"
        )
    if state.requirement is not None and state.requirement.version > 1:
        # An approved change awaits the requester's confirmation; rewriting it would bypass the approval.
        raise Conflict(
            f"requirement version {state.requirement.version} comes from an approved change and awaits the "
            "requester's confirmation",
            code="requirement_awaits_confirmation",
        )
    return [
        e.RequirementRecorded(
            **_meta(state, ctx),
            scope=_text(cmd.scope, "scope"),
            acceptance_criteria=_text(cmd.acceptance_criteria, "acceptance_criteria"),
            version=1,  # versions count confirmed baselines; a draft may be rewritten freely
        )
    ]


def _confirm_requirement(
    state: ServiceRequest, cmd: c.ConfirmRequirement, ctx: CommandContext, _: IntakePolicy
) -> list[DomainEvent]:
    if state.requirement is None:
        raise Conflict("there is no requirement to confirm yet", code="no_requirement")
    if state.requirement.confirmed:
        raise Conflict("the requirement is already confirmed", code="requirement_confirmed")
    return [e.RequirementConfirmed(**_meta(state, ctx), version=state.requirement.version)]


def _propose_change(
    state: ServiceRequest, cmd: c.ProposeRequirementChange, ctx: CommandContext, _: IntakePolicy
) -> list[DomainEvent]:
    if state.requirement is None or not state.requirement.confirmed:
        raise Conflict("only a confirmed requirement can be changed", code="requirement_not_confirmed")
    change_id = _ident(cmd.change_id, "change_id")
    if change_id in state.requirement_changes:
        raise AlreadyExists(f"requirement change {change_id!r} already exists", field="change_id")
    return [
        e.RequirementChangeProposed(
            **_meta(state, ctx),
            change_id=change_id,
            scope=_text(cmd.scope, "scope"),
            acceptance_criteria=_text(cmd.acceptance_criteria, "acceptance_criteria"),
            reason=_text(cmd.reason, "reason"),
            base_version=state.requirement.version,
        )
    ]


def _assess_change(
    state: ServiceRequest, cmd: c.AssessRequirementChange, ctx: CommandContext, _: IntakePolicy
) -> list[DomainEvent]:
    change = _change(state, cmd.change_id, {ChangeState.proposed}, "AssessRequirementChange")
    effort = cmd.effort_hours
    if isinstance(effort, bool) or not isinstance(effort, (int, float)) or not math.isfinite(effort) \
            or not 0 <= effort <= MAX_EFFORT_HOURS:
        raise InvalidInput(f"effort_hours must be a number of hours from 0 to {MAX_EFFORT_HOURS}",
                           field="effort_hours")
    return [
        e.RequirementChangeAssessed(
            **_meta(state, ctx),
            change_id=change.change_id,
            effort_hours=float(effort),
            impact_summary=_text(cmd.impact_summary, "impact_summary"),
        )
    ]


def _approve_change(
    state: ServiceRequest, cmd: c.ApproveRequirementChange, ctx: CommandContext, _: IntakePolicy
) -> list[DomainEvent]:
    """The approved change becomes requirement version N+1.

    Segregation of duties: nobody approves a change they proposed, nor a change to their own request.
    Handbook 2.2 has the requester confirm the requirement before work, and 2.3 changes a confirmed
    requirement, so the new version needs the requester's agreement too: when the request's requester
    proposed the change themselves, their proposal (whose scope and criteria are approved unchanged) is that
    agreement and the new version is confirmed at once; otherwise it stays unconfirmed until the requester
    confirms it (`requires_confirmation`), and work that needs a confirmed requirement waits.
    """
    change = _change(state, cmd.change_id, {ChangeState.assessed}, "ApproveRequirementChange")
    if ctx.actor.id == change.proposed_by:
        raise Forbidden("nobody approves their own requirement change", field="change_id")
    if ctx.actor.id == state.requester_id:
        raise Forbidden("nobody approves a requirement change to their own request", field="change_id")
    current = state.requirement
    assert current is not None  # a change exists only against a confirmed requirement
    if change.base_version != current.version:
        raise Conflict(
            f"change {change.change_id!r} was proposed against version {change.base_version}, "
            f"the requirement is now at version {current.version}",
            code="requirement_change_stale",
        )
    return [
        e.RequirementChangeApproved(
            **_meta(state, ctx),
            change_id=change.change_id,
            version=current.version + 1,
            scope=change.scope,
            acceptance_criteria=change.acceptance_criteria,
            proposed_by=change.proposed_by,
            requires_confirmation=change.proposed_by != state.requester_id,
        )
    ]


def _reject_change(
    state: ServiceRequest, cmd: c.RejectRequirementChange, ctx: CommandContext, _: IntakePolicy
) -> list[DomainEvent]:
    allowed = {ChangeState.proposed, ChangeState.assessed}
    change = _change(state, cmd.change_id, allowed, "RejectRequirementChange")
    return [
        e.RequirementChangeRejected(**_meta(state, ctx), change_id=change.change_id, reason=_text(cmd.reason, "reason"))
    ]


def _change(state: ServiceRequest, change_id: str, allowed: set[ChangeState], name: str) -> RequirementChange:
    change = state.requirement_changes.get(change_id)
    if change is None:
        raise NotFound(f"requirement change {change_id!r} not found", field="change_id")
    if change.state not in allowed:
        raise InvalidTransition(
            f"{name} is not allowed while the change is {change.state.value}; allowed from: {_listing(allowed)}"
        )
    return change


# --- assignment and collaboration --------------------------------------------------------------------


def _assign(state: ServiceRequest, cmd: c.AssignRequest, ctx: CommandContext, _: IntakePolicy) -> list[DomainEvent]:
    team = _ident(cmd.team, "team")
    assignee = _optional_ident(cmd.assignee, "assignee")
    reason = _optional_text(cmd.reason, "reason")
    if (team, assignee) == (state.team, state.assignee):
        raise Conflict("the request already has this team and assignee", code="assignment_unchanged")
    return [
        e.RequestAssigned(
            **_meta(state, ctx),
            team=team,
            assignee=assignee,
            previous_team=state.team,
            previous_assignee=state.assignee,
            reason=reason,
        )
    ]


def _add_watcher(state: ServiceRequest, cmd: c.AddWatcher, ctx: CommandContext, _: IntakePolicy) -> list[DomainEvent]:
    user_id = _ident(cmd.user_id, "user_id")
    _may_manage_watcher(state, user_id, ctx)
    if user_id in state.watchers:
        raise Conflict(f"{user_id} already watches this request", code="already_watching")
    return [e.WatcherAdded(**_meta(state, ctx), user_id=user_id)]


def _remove_watcher(
    state: ServiceRequest, cmd: c.RemoveWatcher, ctx: CommandContext, _: IntakePolicy
) -> list[DomainEvent]:
    user_id = _ident(cmd.user_id, "user_id")
    _may_manage_watcher(state, user_id, ctx)
    if user_id not in state.watchers:
        raise Conflict(f"{user_id} does not watch this request", code="not_watching")
    return [e.WatcherRemoved(**_meta(state, ctx), user_id=user_id)]


def _may_manage_watcher(state: ServiceRequest, user_id: str, ctx: CommandContext) -> None:
    """Staff manage any watcher; a requester manages their own request's watchers, or watches colleagues' requests."""
    actor = ctx.actor
    if _is_staff(ctx) or actor.id in (state.requester_id, user_id):
        return
    raise Forbidden("requesters manage watchers of their own requests, or watch in their own name", field="user_id")


def _add_reply(state: ServiceRequest, cmd: c.AddReply, ctx: CommandContext, _: IntakePolicy) -> list[DomainEvent]:
    reply_id = _new_message_id(state, cmd.reply_id, "reply_id")
    body = _text(cmd.body, "body")
    from_staff = _is_staff(ctx)
    result: list[DomainEvent] = [e.ReplyAdded(**_meta(state, ctx), reply_id=reply_id, body=body, from_staff=from_staff)]
    # The customer's side answering by reply is the answer the agent waits for: work resumes.
    if not from_staff and state.status is Status.awaiting_customer:
        result.append(e.CustomerInfoProvided(**_meta(state, ctx), answer=body))
    return result


def _add_note(state: ServiceRequest, cmd: c.AddInternalNote, ctx: CommandContext, _: IntakePolicy) -> list[DomainEvent]:
    note_id = _new_message_id(state, cmd.note_id, "note_id")
    return [e.InternalNoteAdded(**_meta(state, ctx), note_id=note_id, body=_text(cmd.body, "body"))]


def _new_message_id(state: ServiceRequest, value: str, name: str) -> str:
    message_id = _ident(value, name)
    if message_id in state.message_ids:
        raise AlreadyExists(f"message {message_id!r} already exists", field=name)
    return message_id


def _link(state: ServiceRequest, cmd: c.LinkRequest, ctx: CommandContext, _: IntakePolicy) -> list[DomainEvent]:
    """Refuses a link that contradicts one this request already has to the same target (values.CONTRADICTING_LINKS).
    Only this request's own links are compared: the target's links live in its own stream."""
    link = _link_value(state, cmd.target_id, cmd.link_type)
    if link in state.links:
        raise Conflict(f"already linked: {link.link_type.value} {link.target_id}", code="already_linked")
    clash = sorted(old.link_type.value for old in state.links
                   if old.target_id == link.target_id and old.link_type.contradicts(link.link_type))
    if clash:
        raise Conflict(
            f"{link.link_type.value} {link.target_id} contradicts the existing link {clash[0]} {link.target_id}; "
            "remove that link first",
            code="contradictory_link",
        )
    return [e.RequestLinked(**_meta(state, ctx), target_id=link.target_id, link_type=link.link_type)]


def _unlink(state: ServiceRequest, cmd: c.UnlinkRequest, ctx: CommandContext, _: IntakePolicy) -> list[DomainEvent]:
    link = _link_value(state, cmd.target_id, cmd.link_type)
    if link not in state.links:
        raise Conflict(f"no such link: {link.link_type.value} {link.target_id}", code="not_linked")
    return [e.RequestUnlinked(**_meta(state, ctx), target_id=link.target_id, link_type=link.link_type)]


def _link_value(state: ServiceRequest, target_id: str, link_type: LinkType) -> Link:
    target = _ident(target_id, "target_id")
    if target == state.id:
        raise InvalidInput("a request cannot be linked to itself", field="target_id")
    return Link(_enum(LinkType, link_type, "link_type"), target)


def _log_time(state: ServiceRequest, cmd: c.LogTime, ctx: CommandContext, policy: IntakePolicy) -> list[DomainEvent]:
    entry_id = _ident(cmd.entry_id, "entry_id")
    if entry_id in state.time_entry_ids:
        raise AlreadyExists(f"time entry {entry_id!r} already exists", field="entry_id")
    minutes = cmd.minutes
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_MINUTES_PER_ENTRY:
        raise InvalidInput(f"minutes must be a whole number from 1 to {MAX_MINUTES_PER_ENTRY}", field="minutes")
    today = policy.calendar.local_date(ctx.now)
    work_date = today if cmd.work_date is None else cmd.work_date
    if isinstance(work_date, datetime) or not isinstance(work_date, date) or work_date > today:
        raise InvalidInput("work_date must be a date, today or earlier", field="work_date")
    note = _optional_text(cmd.note, "note")
    return [e.TimeLogged(**_meta(state, ctx), entry_id=entry_id, minutes=minutes, work_date=work_date, note=note)]


# --- small helpers ---------------------------------------------------------------------------------


def _meta(state: ServiceRequest, ctx: CommandContext) -> dict[str, Any]:
    return {"request_id": state.id, "at": ctx.now, "by": ctx.actor.id}


def _is_staff(ctx: CommandContext) -> bool:
    return ctx.actor.has(*STAFF)


def _resolved_at(state: ServiceRequest) -> datetime:
    if state.resolved_at is None:  # closed requests were always resolved first
        raise Conflict("the request was never resolved", code="never_resolved")
    return state.resolved_at


def _listing(statuses: Iterable[Enum]) -> str:
    """Members in declaration order, so that messages read like the life cycle."""
    wanted = set(statuses)
    members = type(next(iter(wanted)))
    return ", ".join(m.value for m in members if m in wanted)


E = TypeVar("E", bound=Enum)


def _enum(kind: type[E], value: Any, name: str) -> E:
    try:
        return kind(value)
    except ValueError as error:
        allowed = ", ".join(m.value for m in kind)
        raise InvalidInput(f"{name} must be one of: {allowed}", field=name) from error


def _text(value: Any, name: str, *, required: bool = True) -> str:
    """Text of at most the field's limit in values.TEXT_LIMITS, the one the HTTP bodies use (every field is there)."""
    max_length = TEXT_LIMITS[name]
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text", field=name)
    if required and not value.strip():
        raise InvalidInput(f"{name} must not be empty", field=name)
    if len(value) > max_length:
        raise InvalidInput(f"{name} must be at most {max_length} characters", field=name)
    return value


# Bidi embeddings, overrides and isolates reorder what a reader sees (Trojan Source, CVE-2021-42574).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

# Printable by Unicode's account, yet drawn as nothing: fillers and the blank braille pattern.
_BLANKS = frozenset("\u034f\u115f\u1160\u2800\u3164\uffa0")


def _title(value: Any) -> str:
    title = _text(value, "title")
    if any(ch in _BIDI_CONTROLS for ch in title):
        raise InvalidInput("title must not contain bidirectional control characters", field="title")
    if not any(ch.isprintable() and not ch.isspace() and ch not in _BLANKS and unicodedata.category(ch) != "Cf"
               for ch in title):
        raise InvalidInput("title must contain visible characters", field="title")
    return title


def _optional_text(value: Any, name: str) -> str | None:
    """None and blank text both mean 'not given'."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _text(value, name)


def _ident(value: Any, name: str) -> str:
    return _text(value, name)


def _optional_ident(value: Any, name: str) -> str | None:
    return None if value is None else _ident(value, name)


# --- evolve ----------------------------------------------------------------------------------------


def evolve(state: ServiceRequest | None, event: DomainEvent) -> ServiceRequest:
    """The state after `event`. Events are facts: no validation here beyond the stream's shape."""
    if isinstance(event, e.RequestSubmitted):
        if state is not None:
            raise ValueError("a request is submitted only once")
        return _submitted(event)
    if state is None:
        raise ValueError(f"{type(event).__name__} before RequestSubmitted")
    match event:
        case e.RequestAccepted():
            return replace(state, status=Status.accepted, team=event.team, assignee=event.assignee)
        case e.RequestRejected():
            return replace(state, status=Status.rejected)
        case e.WorkStarted() | e.CustomerInfoProvided():
            return replace(state, status=Status.in_progress)
        case e.CustomerInfoRequested():
            return replace(state, status=Status.awaiting_customer)
        case e.RequestResolved():
            return replace(
                state, status=Status.resolved, resolved_at=event.at, auto_close_due_at=event.auto_close_due_at
            )
        case e.RequestClosed():
            return replace(state, status=Status.closed, closed_at=event.at, close_reason=event.reason)
        case e.RequestReopened():
            return replace(
                state,
                status=Status.reopened,
                reopen_count=event.reopen_count,
                resolved_at=None,
                auto_close_due_at=None,
                closed_at=None,
                close_reason=None,
            )
        case e.RequestCancelled():
            return replace(state, status=Status.cancelled)
        case e.RequestApproved():
            return replace(state, approval=ApprovalState.approved)
        case e.RequestDeclined():
            return replace(state, approval=ApprovalState.declined, status=Status.rejected)
        case e.PriorityOverridden():
            return replace(state, priority=event.priority, priority_overridden=True)
        case e.RequestAssigned():
            return replace(state, team=event.team, assignee=event.assignee)
        case e.WatcherAdded():
            return replace(state, watchers=state.watchers | {event.user_id})
        case e.WatcherRemoved():
            return replace(state, watchers=state.watchers - {event.user_id})
        case e.ReplyAdded():
            return replace(state, message_ids=state.message_ids | {event.reply_id})
        case e.InternalNoteAdded():
            return replace(state, message_ids=state.message_ids | {event.note_id})
        case e.RequestLinked():
            return replace(state, links=state.links | {Link(event.link_type, event.target_id)})
        case e.RequestUnlinked():
            return replace(state, links=state.links - {Link(event.link_type, event.target_id)})
        case e.TimeLogged():
            return _time_logged(state, event)
    return _evolve_requirement(state, event)


def _submitted(event: e.RequestSubmitted) -> ServiceRequest:
    return ServiceRequest(
        id=event.request_id,
        kind=event.kind,
        channel=event.channel,
        title=event.title,
        description=event.description,
        impact=event.impact,
        urgency=event.urgency,
        priority=event.priority,
        status=Status.submitted,
        requester_id=event.requester_id,
        organisation_id=event.organisation_id,
        submitted_at=event.at,
        service=event.service,
        customer_tier=event.customer_tier,
        team=event.team,
        watchers=frozenset(event.watchers),
        requires_requirement_confirmation=event.requires_requirement_confirmation,
        approval=ApprovalState.pending if event.requires_approval else ApprovalState.not_required,
    )


def _time_logged(state: ServiceRequest, event: e.TimeLogged) -> ServiceRequest:
    minutes = dict(state.time_logged_minutes)
    minutes[event.by] = minutes.get(event.by, 0) + event.minutes
    return replace(state, time_logged_minutes=minutes, time_entry_ids=state.time_entry_ids | {event.entry_id})


def _evolve_requirement(state: ServiceRequest, event: DomainEvent) -> ServiceRequest:
    match event:
        case e.RequirementRecorded():
            requirement = Requirement(event.scope, event.acceptance_criteria, version=event.version)
            return replace(state, requirement=requirement)
        case e.RequirementConfirmed():
            return replace(state, requirement=replace(_requirement(state), confirmed=True))
        case e.RequirementChangeProposed():
            change = RequirementChange(
                change_id=event.change_id,
                scope=event.scope,
                acceptance_criteria=event.acceptance_criteria,
                reason=event.reason,
                base_version=event.base_version,
                proposed_by=event.by,
            )
            return _with_change(state, change)
        case e.RequirementChangeAssessed():
            change = replace(
                _existing_change(state, event.change_id),
                state=ChangeState.assessed,
                effort_hours=event.effort_hours,
                impact_summary=event.impact_summary,
            )
            return _with_change(state, change)
        case e.RequirementChangeApproved():
            change = replace(_existing_change(state, event.change_id), state=ChangeState.approved)
            confirmed = not event.requires_confirmation
            requirement = Requirement(event.scope, event.acceptance_criteria, version=event.version, confirmed=confirmed)
            return replace(_with_change(state, change), requirement=requirement)
        case e.RequirementChangeRejected():
            change = replace(
                _existing_change(state, event.change_id), state=ChangeState.rejected, rejection_reason=event.reason
            )
            return _with_change(state, change)
    raise TypeError(f"not an intake event: {type(event).__name__}")


def _requirement(state: ServiceRequest) -> Requirement:
    if state.requirement is None:
        raise ValueError("requirement event before RequirementRecorded")
    return state.requirement


def _existing_change(state: ServiceRequest, change_id: str) -> RequirementChange:
    if change_id not in state.requirement_changes:
        raise ValueError(f"requirement change {change_id!r} was never proposed")
    return state.requirement_changes[change_id]


def _with_change(state: ServiceRequest, change: RequirementChange) -> ServiceRequest:
    return replace(state, requirement_changes={**state.requirement_changes, change.change_id: change})


def replay(events: Iterable[DomainEvent], state: ServiceRequest | None = None) -> ServiceRequest | None:
    """The state after `events` (of one stream, in order), starting from `state`; None for an empty stream.

    Handlers use it as `replay(decide(state, ...), state)` to get the state their command produced."""
    for event in events:
        state = evolve(state, event)
    return state


# --- the rule table ---------------------------------------------------------------------------------

_UNDECIDED_CHANGE = frozenset({ChangeState.proposed, ChangeState.assessed})
_BEFORE_WORK = frozenset({Status.submitted, Status.accepted})

_RULES: dict[type, _Rule] = {
    c.SubmitRequest: _Rule(_submit, STAFF | SYSTEM, "own"),  # handled first in decide: there is no state yet
    c.AcceptRequest: _Rule(_accept, STAFF, from_statuses=frozenset({Status.submitted})),
    c.RejectRequest: _Rule(_reject, STAFF, from_statuses=frozenset({Status.submitted})),
    c.StartWork: _Rule(_start_work, STAFF, from_statuses=frozenset({Status.accepted, Status.reopened})),
    c.RequestCustomerInfo: _Rule(_request_info, STAFF, from_statuses=frozenset({Status.in_progress})),
    # Staff may record an answer given by phone on the customer's behalf.
    c.ProvideCustomerInfo: _Rule(_provide_info, STAFF, "org", frozenset({Status.awaiting_customer})),
    c.ResolveRequest: _Rule(_resolve, STAFF, from_statuses=frozenset({Status.in_progress})),
    c.AcceptDelivery: _Rule(_accept_delivery, frozenset(), "own", frozenset({Status.resolved})),
    c.RejectDelivery: _Rule(_reject_delivery, frozenset(), "own", frozenset({Status.resolved})),
    c.ReopenRequest: _Rule(_reopen, frozenset(), "own", frozenset({Status.closed})),
    c.AutoCloseRequest: _Rule(_auto_close, SYSTEM, from_statuses=frozenset({Status.resolved})),
    c.CancelRequest: _Rule(_cancel, frozenset(), "own", OPEN),
    c.OverridePriority: _Rule(_override_priority, STAFF, from_statuses=OPEN),
    c.ApproveRequest: _Rule(_approve, APPROVERS, from_statuses=_BEFORE_WORK),
    c.DeclineRequest: _Rule(_decline, APPROVERS, from_statuses=_BEFORE_WORK),
    c.RecordRequirement: _Rule(_record_requirement, STAFF, from_statuses=OPEN),
    c.ConfirmRequirement: _Rule(_confirm_requirement, frozenset(), "own", OPEN),
    c.ProposeRequirementChange: _Rule(_propose_change, STAFF, "org", OPEN),
    c.AssessRequirementChange: _Rule(_assess_change, STAFF, from_statuses=OPEN),
    c.ApproveRequirementChange: _Rule(_approve_change, APPROVERS, from_statuses=OPEN),
    c.RejectRequirementChange: _Rule(_reject_change, APPROVERS, from_statuses=OPEN),
    c.AssignRequest: _Rule(_assign, STAFF, from_statuses=OPEN),
    c.AddWatcher: _Rule(_add_watcher, STAFF, "org"),
    c.RemoveWatcher: _Rule(_remove_watcher, STAFF, "org"),
    c.AddReply: _Rule(_add_reply, STAFF, "org", frozenset(Status) - FINISHED),
    c.AddInternalNote: _Rule(_add_note, STAFF),
    c.LinkRequest: _Rule(_link, STAFF),
    c.UnlinkRequest: _Rule(_unlink, STAFF),
    c.LogTime: _Rule(_log_time, STAFF),
}

COMMANDS = frozenset(_RULES)


def callers(command: type) -> tuple[Role, ...]:
    """Roles that may issue `command` at all (the HTTP route's guard); its rule narrows further."""
    rule = _RULES[command]
    roles = rule.staff_roles | ({Role.requester} if rule.requester != "none" else set())
    return tuple(r for r in Role if r in roles)

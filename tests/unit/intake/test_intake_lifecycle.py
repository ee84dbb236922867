"""The life cycle of a service request: every transition, reopen, auto-close, replay and the events' shape."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest
from intake_story import (
    AGENT,
    MANAGER,
    POLICY,
    REQUESTER,
    RID,
    T0,
    TZ,
    Story,
    submit_command,
)

from opsat.common.calendar import BusinessCalendar
from opsat.common.domain import (
    SYSTEM_ACTOR,
    Actor,
    CommandContext,
    Conflict,
    DomainEvent,
    Forbidden,
    InvalidTransition,
)
from opsat.intake.domain import INTAKE_EVENTS, ServiceRequest, decide, evolve, replay
from opsat.intake.domain import commands as c
from opsat.intake.domain import events as e
from opsat.intake.domain.policy import IntakePolicy
from opsat.intake.domain.values import (
    ApprovalState,
    ChangeState,
    CloseReason,
    Link,
    LinkType,
    Priority,
    RequestKind,
    Requirement,
    RequirementChange,
    Status,
)


def submit(**changes) -> c.SubmitRequest:
    return submit_command(dict(title="Printer jams", description="The printer on floor 3 jams on every page.", impact=3, urgency=3), changes)


ACCEPT = (c.AcceptRequest(RID, team="desk"), AGENT)
START = (c.StartWork(RID), AGENT)
ASK = (c.RequestCustomerInfo(RID, "Which tray?"), AGENT)
RESOLVE = (c.ResolveRequest(RID, "Replaced the pick-up roller."), AGENT)
CLOSE = (c.AcceptDelivery(RID, "Works, thanks"), REQUESTER)
REJECT_DELIVERY = (c.RejectDelivery(RID, "Still jams on tray 2."), REQUESTER)

PATHS = {
    Status.submitted: [],
    Status.accepted: [ACCEPT],
    Status.in_progress: [ACCEPT, START],
    Status.awaiting_customer: [ACCEPT, START, ASK],
    Status.resolved: [ACCEPT, START, RESOLVE],
    Status.closed: [ACCEPT, START, RESOLVE, CLOSE],
    Status.reopened: [ACCEPT, START, RESOLVE, REJECT_DELIVERY],
    Status.rejected: [(c.RejectRequest(RID, "Duplicate of REQ-0"), AGENT)],
    Status.cancelled: [(c.CancelRequest(RID, "Fixed it myself"), REQUESTER)],
}


def story_in(status: Status, policy: IntakePolicy = POLICY, **submit_changes) -> Story:
    story = Story(policy)
    story.do(submit(**submit_changes), REQUESTER)
    for command, actor in PATHS[status]:
        story.do(command, actor)
    assert story.state is not None and story.state.status is status
    return story


# --- the transition table ----------------------------------------------------------------------------

OPEN = {Status.submitted, Status.accepted, Status.in_progress, Status.awaiting_customer, Status.reopened}
ANY = set(Status)


def _same(state: ServiceRequest) -> ServiceRequest:
    return state


def _approval_pending(state: ServiceRequest) -> ServiceRequest:
    return replace(state, approval=ApprovalState.pending)


def _draft(state: ServiceRequest) -> ServiceRequest:
    return replace(state, requirement=Requirement("Scope", "Criteria"))


def _confirmed(state: ServiceRequest) -> ServiceRequest:
    return replace(state, requirement=Requirement("Scope", "Criteria", confirmed=True))


def _change_in(change_state: ChangeState) -> Callable[[ServiceRequest], ServiceRequest]:
    def prepare(state: ServiceRequest) -> ServiceRequest:
        change = RequirementChange("CH-1", "New scope", "New criteria", "Reason", 1, REQUESTER.id, change_state)
        return replace(_confirmed(state), requirement_changes={"CH-1": change})

    return prepare


def _watched(state: ServiceRequest) -> ServiceRequest:
    return replace(state, watchers=frozenset({"u-dave"}))


def _linked(state: ServiceRequest) -> ServiceRequest:
    return replace(state, links=frozenset({Link(LinkType.caused_by, "REQ-9")}))


# (command, actor, prepare the state, statuses it is allowed from, status it leads to or None for unchanged)
CASES = [
    (c.AcceptRequest(RID, team="desk"), AGENT, _same, {Status.submitted}, Status.accepted),
    (c.RejectRequest(RID, "Out of scope"), AGENT, _same, {Status.submitted}, Status.rejected),
    (c.StartWork(RID), AGENT, _same, {Status.accepted, Status.reopened}, Status.in_progress),
    (c.RequestCustomerInfo(RID, "Which tray?"), AGENT, _same, {Status.in_progress}, Status.awaiting_customer),
    (c.ProvideCustomerInfo(RID, "Tray 2"), REQUESTER, _same, {Status.awaiting_customer}, Status.in_progress),
    (c.ResolveRequest(RID, "Fixed"), AGENT, _same, {Status.in_progress}, Status.resolved),
    (c.AcceptDelivery(RID), REQUESTER, _same, {Status.resolved}, Status.closed),
    (c.RejectDelivery(RID, "Not fixed"), REQUESTER, _same, {Status.resolved}, Status.reopened),
    (c.ReopenRequest(RID, "Broke again"), REQUESTER, _same, {Status.closed}, Status.reopened),
    (c.AutoCloseRequest(RID), SYSTEM_ACTOR, _same, {Status.resolved}, Status.closed),
    (c.CancelRequest(RID, "Not needed"), REQUESTER, _same, OPEN, Status.cancelled),
    (c.OverridePriority(RID, Priority.P1, "CEO's printer"), AGENT, _same, OPEN, None),
    (c.ApproveRequest(RID), MANAGER, _approval_pending, {Status.submitted, Status.accepted}, None),
    (c.DeclineRequest(RID, "No"), MANAGER, _approval_pending, {Status.submitted, Status.accepted}, Status.rejected),
    (c.RecordRequirement(RID, "Scope", "Criteria"), AGENT, _same, OPEN, None),
    (c.ConfirmRequirement(RID), REQUESTER, _draft, OPEN, None),
    (c.ProposeRequirementChange(RID, "CH-2", "S", "C", "R"), REQUESTER, _confirmed, OPEN, None),
    (c.AssessRequirementChange(RID, "CH-1", 4, "Small"), AGENT, _change_in(ChangeState.proposed), OPEN, None),
    (c.ApproveRequirementChange(RID, "CH-1"), MANAGER, _change_in(ChangeState.assessed), OPEN, None),
    (c.RejectRequirementChange(RID, "CH-1", "No"), MANAGER, _change_in(ChangeState.proposed), OPEN, None),
    (c.AssignRequest(RID, "network"), AGENT, _same, OPEN, None),
    (c.AddWatcher(RID, "u-erin"), AGENT, _same, ANY, None),
    (c.RemoveWatcher(RID, "u-dave"), AGENT, _watched, ANY, None),
    (c.AddReply(RID, "M-1", "On my way"), AGENT, _same, ANY - {Status.closed, Status.rejected, Status.cancelled}, None),
    (c.AddInternalNote(RID, "N-1", "Roller worn"), AGENT, _same, ANY, None),
    (c.LinkRequest(RID, "REQ-7", LinkType.duplicate_of), AGENT, _same, ANY, None),
    (c.UnlinkRequest(RID, "REQ-9", LinkType.caused_by), AGENT, _linked, ANY, None),
    (c.LogTime(RID, "T-1", 30), AGENT, _same, ANY, None),
]


def test_the_table_covers_every_command_except_submit() -> None:
    assert {type(case[0]) for case in CASES} == set(c.INTAKE_COMMANDS) - {c.SubmitRequest}


@pytest.mark.parametrize("status", list(Status), ids=lambda s: s.value)
@pytest.mark.parametrize("case", CASES, ids=lambda case: type(case[0]).__name__)
def test_transition_table(case, status: Status) -> None:
    command, actor, prepare, allowed_from, leads_to = case
    story = story_in(status)
    state = prepare(story.state)
    later = timedelta(days=30) if isinstance(command, c.AutoCloseRequest) else timedelta(hours=1)
    ctx = CommandContext(actor, story.now + later)
    if status not in allowed_from:
        with pytest.raises(InvalidTransition) as raised:
            decide(state, command, ctx, POLICY)
        assert status.value in raised.value.detail
        return
    events = decide(state, command, ctx, POLICY)
    assert events and all(event.request_id == RID and event.at == ctx.now for event in events)
    assert replay(events, state).status is (leads_to or status)


def test_accepting_twice_is_a_conflict_that_names_the_statuses() -> None:
    story = story_in(Status.accepted)
    with pytest.raises(InvalidTransition) as raised:
        story.do(c.AcceptRequest(RID, team="desk"), AGENT)
    assert isinstance(raised.value, Conflict)
    assert raised.value.detail == "AcceptRequest is not allowed while the request is accepted; allowed from: submitted"


def test_the_whole_way_through() -> None:
    story = Story()
    seen = []
    for command, actor in [(submit(), REQUESTER), ACCEPT, START, ASK]:
        story.do(command, actor)
        seen.append(story.state.status)
    story.do(c.ProvideCustomerInfo(RID, "Tray 2"), REQUESTER)
    seen.append(story.state.status)
    for command, actor in [RESOLVE, REJECT_DELIVERY, START, RESOLVE, CLOSE]:
        story.do(command, actor)
        seen.append(story.state.status)
    assert seen == [
        Status.submitted,
        Status.accepted,
        Status.in_progress,
        Status.awaiting_customer,
        Status.in_progress,
        Status.resolved,
        Status.reopened,
        Status.in_progress,
        Status.resolved,
        Status.closed,
    ]
    assert story.state.reopen_count == 1
    assert story.state.closed_at == story.now


# --- reopen window -----------------------------------------------------------------------------------


def _closed_story() -> tuple[Story, datetime]:
    story = story_in(Status.closed)
    resolved_at = story.state.resolved_at
    assert resolved_at is not None
    return story, resolved_at


def test_reopen_exactly_at_the_end_of_the_window_is_allowed() -> None:
    story, resolved_at = _closed_story()
    events = story.do(c.ReopenRequest(RID, "Jams again"), REQUESTER, at=resolved_at + timedelta(days=7))
    assert events == [
        e.RequestReopened(
            request_id=RID,
            at=resolved_at + timedelta(days=7),
            by=REQUESTER.id,
            reason="Jams again",
            from_status=Status.closed,
            reopen_count=1,
        )
    ]
    state = story.state
    assert (state.status, state.resolved_at, state.closed_at, state.auto_close_due_at) == (
        Status.reopened,
        None,
        None,
        None,
    )


def test_reopen_just_after_the_window_is_a_conflict() -> None:
    story, resolved_at = _closed_story()
    too_late = resolved_at + timedelta(days=7, microseconds=1)
    with pytest.raises(Conflict) as raised:
        story.do(c.ReopenRequest(RID, "Jams again"), REQUESTER, at=too_late)
    assert raised.value.code == "reopen_window_expired"


def test_reopen_window_is_configuration() -> None:
    story = story_in(Status.closed, policy=IntakePolicy(reopen_window_days=1))
    with pytest.raises(Conflict):
        story.do(c.ReopenRequest(RID, "Jams again"), REQUESTER, at=story.now + timedelta(days=2))


def test_a_resolved_request_is_reopened_by_rejecting_the_delivery() -> None:
    story = story_in(Status.resolved)
    with pytest.raises(InvalidTransition, match="allowed from: closed"):
        story.do(c.ReopenRequest(RID, "Not fixed"), REQUESTER)
    [event] = story.do(c.RejectDelivery(RID, "Not fixed"), REQUESTER)
    assert isinstance(event, e.RequestReopened) and event.from_status is Status.resolved


# --- auto-close --------------------------------------------------------------------------------------

# Wednesday 1 October 2025 is a holiday in this calendar.
HOLIDAY_POLICY = IntakePolicy(calendar=BusinessCalendar(holidays=frozenset({date(2025, 10, 1)})))
FRIDAY = datetime(2025, 9, 26, 15, 0, tzinfo=TZ)
DUE = datetime(2025, 10, 2, 15, 0, tzinfo=TZ)  # Mon 29, Tue 30, (Wed 1 off), Thu 2 October


def _resolved_on_friday() -> Story:
    story = Story(HOLIDAY_POLICY)
    story.do(submit(), REQUESTER, at=FRIDAY - timedelta(hours=3))
    for command, actor in [ACCEPT, START]:
        story.do(command, actor)
    story.do(RESOLVE[0], AGENT, at=FRIDAY)
    return story


def test_resolve_announces_the_auto_close_due_time_across_a_weekend_and_a_holiday() -> None:
    story = _resolved_on_friday()
    [resolved] = story.events[-1:]
    assert isinstance(resolved, e.RequestResolved)
    assert resolved.at == FRIDAY
    assert resolved.auto_close_due_at == DUE
    assert story.state.auto_close_due_at == DUE


def test_auto_close_before_the_due_time_is_a_conflict() -> None:
    story = _resolved_on_friday()
    with pytest.raises(Conflict) as raised:
        story.do(c.AutoCloseRequest(RID), SYSTEM_ACTOR, at=DUE - timedelta(seconds=1))
    assert raised.value.code == "auto_close_not_due"


def test_auto_close_at_the_due_time_closes_the_request() -> None:
    story = _resolved_on_friday()
    [closed] = story.do(c.AutoCloseRequest(RID), SYSTEM_ACTOR, at=DUE)
    assert closed == e.RequestClosed(
        request_id=RID, at=DUE, by=SYSTEM_ACTOR.id, reason=CloseReason.auto_closed, auto_close_due_at=DUE
    )
    assert story.state.status is Status.closed


def test_auto_close_keeps_the_due_time_announced_at_resolve_when_the_policy_changes() -> None:
    story = _resolved_on_friday()
    story.policy = IntakePolicy(auto_close_business_days=10)
    story.do(c.AutoCloseRequest(RID), SYSTEM_ACTOR, at=DUE)
    assert story.state.status is Status.closed


@pytest.mark.parametrize("actor", [REQUESTER, AGENT, MANAGER])
def test_only_a_service_account_auto_closes(actor: Actor) -> None:
    story = _resolved_on_friday()
    with pytest.raises(Forbidden):
        story.do(c.AutoCloseRequest(RID), actor, at=DUE)


def test_auto_close_with_the_default_china_calendar_and_a_makeup_workday() -> None:
    china = IntakePolicy(
        calendar=BusinessCalendar(
            holidays=frozenset(date(2025, 10, d) for d in range(1, 9)),
            makeup_workdays=frozenset({date(2025, 9, 28), date(2025, 10, 11)}),
        )
    )
    story = Story(china)
    story.do(submit(), REQUESTER, at=datetime(2025, 9, 30, 9, 0, tzinfo=TZ))
    for command, actor in [ACCEPT, START]:
        story.do(command, actor)
    [resolved] = story.do(RESOLVE[0], AGENT, at=datetime(2025, 9, 30, 11, 0, tzinfo=TZ))
    # Thu 9 Oct, Fri 10 Oct, makeup Saturday 11 Oct.
    assert resolved.auto_close_due_at == datetime(2025, 10, 11, 11, 0, tzinfo=TZ)


# --- evolve and replay --------------------------------------------------------------------------------


def grand_tour() -> Story:
    """One request that goes through nearly every command."""
    story = Story()
    story.do(submit(kind=RequestKind.change, impact=2, urgency=2, watchers=("u-dave",)), REQUESTER)
    story.do(c.ApproveRequest(RID, "Go ahead"), MANAGER)
    story.do(c.RecordRequirement(RID, "Move printer", "Prints on floor 4"), AGENT)
    story.do(c.ConfirmRequirement(RID), REQUESTER)
    story.do(c.AcceptRequest(RID, team="desk"), AGENT)
    story.do(c.AssignRequest(RID, "facilities", "u-frank", "needs a trolley"), AGENT)
    story.do(c.AddWatcher(RID, "u-erin"), AGENT)
    story.do(c.RemoveWatcher(RID, "u-dave"), REQUESTER)
    story.do(c.OverridePriority(RID, Priority.P2, "Board meeting tomorrow"), AGENT)
    story.do(c.StartWork(RID), AGENT)
    story.do(c.RequestCustomerInfo(RID, "Which room?"), AGENT)
    story.do(c.AddReply(RID, "M-1", "Room 401"), REQUESTER)
    story.do(c.AddInternalNote(RID, "N-1", "Needs two people"), AGENT)
    story.do(c.LinkRequest(RID, "REQ-7", LinkType.parent_of), AGENT)
    story.do(c.LinkRequest(RID, "REQ-8", LinkType.caused_by), AGENT)
    story.do(c.UnlinkRequest(RID, "REQ-8", LinkType.caused_by), AGENT)
    story.do(c.LogTime(RID, "T-1", 45, "moving"), AGENT)
    story.do(c.LogTime(RID, "T-2", 15), AGENT)
    story.do(c.ProposeRequirementChange(RID, "CH-1", "Move printer and scanner", "Both work", "Scanner too"), REQUESTER)
    story.do(c.AssessRequirementChange(RID, "CH-1", 2.5, "Half a day more"), AGENT)
    story.do(c.ApproveRequirementChange(RID, "CH-1"), MANAGER)
    story.do(c.ProposeRequirementChange(RID, "CH-2", "Also a fax", "Fax works", "Legacy"), REQUESTER)
    story.do(c.RejectRequirementChange(RID, "CH-2", "Fax is retired"), MANAGER)
    story.do(c.ResolveRequest(RID, "Moved both"), AGENT)
    story.do(c.RejectDelivery(RID, "Scanner offline"), REQUESTER)
    story.do(c.StartWork(RID), AGENT)
    story.do(c.ResolveRequest(RID, "Scanner on the network"), AGENT)
    story.do(c.AcceptDelivery(RID), REQUESTER)
    return story


def test_replaying_the_events_gives_the_state_built_step_by_step() -> None:
    story = grand_tour()
    assert replay(story.events) == story.state


def test_state_after_the_grand_tour() -> None:
    state = grand_tour().state
    assert state.status is Status.closed
    assert (state.priority, state.priority_overridden) == (Priority.P2, True)
    assert (state.team, state.assignee) == ("facilities", "u-frank")
    assert state.watchers == {"u-erin"}
    assert state.approval is ApprovalState.approved
    assert state.requirement == Requirement("Move printer and scanner", "Both work", version=2, confirmed=True)
    assert state.requirement_changes["CH-1"].state is ChangeState.approved
    assert state.requirement_changes["CH-1"].effort_hours == 2.5
    assert state.requirement_changes["CH-2"].state is ChangeState.rejected
    assert state.requirement_changes["CH-2"].rejection_reason == "Fax is retired"
    assert state.links == {Link(LinkType.parent_of, "REQ-7")}
    assert state.time_logged_minutes == {AGENT.id: 60}
    assert state.message_ids == {"M-1", "N-1"}
    assert state.reopen_count == 1
    assert state.resolved_at is not None and state.closed_at is not None


def test_replay_of_nothing_is_nothing() -> None:
    assert replay([]) is None


def test_a_stream_must_start_with_the_submit() -> None:
    story = grand_tour()
    with pytest.raises(ValueError):
        evolve(None, story.events[1])
    with pytest.raises(ValueError):
        evolve(story.state, story.events[0])


# --- events on the wire ---------------------------------------------------------------------------------


def all_kinds_of_events() -> list[DomainEvent]:
    events = list(grand_tour().events)
    events += story_in(Status.rejected).events[-1:]
    events += story_in(Status.cancelled).events[-1:]
    declined = story_in(Status.submitted, kind=RequestKind.change)
    declined.do(c.DeclineRequest(RID, "No budget"), MANAGER)
    events += declined.events[-1:]
    auto = _resolved_on_friday()
    auto.do(c.AutoCloseRequest(RID), SYSTEM_ACTOR, at=DUE)
    return events + auto.events[-1:]


def test_every_event_class_is_produced_by_some_command() -> None:
    assert {type(event) for event in all_kinds_of_events()} == set(INTAKE_EVENTS)


def test_events_survive_a_json_round_trip() -> None:
    for event in all_kinds_of_events():
        data = json.loads(json.dumps(event.model_dump(mode="json")))
        assert type(event).model_validate(data) == event


def test_event_types_are_unique_and_named_after_the_service() -> None:
    types = [cls.event_type for cls in INTAKE_EVENTS]
    assert len(types) == len(set(types))
    assert all(t.startswith("opsat.intake.request.") for t in types)
    assert all(cls.schema_version == 1 for cls in INTAKE_EVENTS)


def test_every_event_has_a_json_schema_with_the_common_fields() -> None:
    for cls in INTAKE_EVENTS:
        schema = cls.model_json_schema()
        assert {"request_id", "at", "by"} <= set(schema["required"]), cls.__name__


def test_submitted_carries_everything_the_projections_need() -> None:
    story = Story()
    [event] = story.do(
        submit(service="Printing", customer_tier="gold", team="desk", watchers=("u-dave",), impact=1, urgency=2),
        AGENT,  # tier and team are staff's to set
    )
    assert event.model_dump(mode="json") == {
        "request_id": RID,
        "at": (T0 + timedelta(minutes=5)).isoformat(),
        "by": AGENT.id,
        "kind": "incident",
        "channel": "portal",
        "title": "Printer jams",
        "description": "The printer on floor 3 jams on every page.",
        "impact": 1,
        "urgency": 2,
        "priority": "P2",
        "requester_id": REQUESTER.id,
        "organisation_id": REQUESTER.organisation,
        "service": "Printing",
        "customer_tier": "gold",
        "team": "desk",
        "watchers": ["u-dave"],
        "requires_approval": False,
        "requires_requirement_confirmation": False,
    }

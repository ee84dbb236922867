"""Requirement changes (who approves, who confirms), resolve with pending changes, the reopen window after an
auto-close, auto-close due times in working hours, contradictory links and the domain's text limits."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from intake_story import AGENT, COLLEAGUE, MANAGER, REQUESTER, RID, TZ, Story, submit_command

from opsat.common.calendar import BusinessCalendar
from opsat.common.domain import SYSTEM_ACTOR, Actor, Conflict, Forbidden, InvalidInput
from opsat.intake.domain import commands as c
from opsat.intake.domain.policy import IntakePolicy
from opsat.intake.domain.values import ChangeState, LinkType, RequestKind, Status


def submit(**changes) -> c.SubmitRequest:
    return submit_command(dict(title="New laptop", description="For the new hire.", impact=3, urgency=2), changes)


def confirmed_service_request(policy: IntakePolicy | None = None) -> Story:
    story = Story(policy) if policy else Story()
    story.do(submit(kind=RequestKind.service_request), REQUESTER)
    story.do(c.AcceptRequest(RID, team="desk"), AGENT)
    story.do(c.RecordRequirement(RID, "Laptop", "Delivered and enrolled"), AGENT)
    story.do(c.ConfirmRequirement(RID), REQUESTER)
    return story


def assessed_change(proposer: Actor, story: Story | None = None) -> Story:
    story = story or confirmed_service_request()
    story.do(c.ProposeRequirementChange(RID, "CH-1", "Laptop and dock", "Both delivered", "Needs a dock"), proposer)
    story.do(c.AssessRequirementChange(RID, "CH-1", 2, "One more item"), AGENT)
    return story


# --- 1. requirement change approval -------------------------------------------------------------------


def test_nobody_approves_their_own_requirement_change() -> None:
    story = assessed_change(MANAGER)
    with pytest.raises(Forbidden):
        story.do(c.ApproveRequirementChange(RID, "CH-1"), MANAGER)
    assert story.state.requirement_changes["CH-1"].state is ChangeState.assessed


def test_a_change_proposed_by_staff_waits_for_the_requesters_confirmation() -> None:
    story = assessed_change(AGENT)
    story.do(c.StartWork(RID), AGENT)
    [approved] = story.do(c.ApproveRequirementChange(RID, "CH-1"), MANAGER)
    assert (approved.version, approved.requires_confirmation, approved.proposed_by) == (2, True, AGENT.id)
    requirement = story.state.requirement
    assert (requirement.version, requirement.scope, requirement.confirmed) == (2, "Laptop and dock", False)
    # Work that needs a confirmed requirement waits: no delivery against criteria nobody agreed to.
    with pytest.raises(Conflict) as raised:
        story.do(c.ResolveRequest(RID, "Delivered"), AGENT)
    assert raised.value.code == "requirement_not_confirmed"
    # Staff may not rewrite the approved baseline behind the change control's back.
    with pytest.raises(Conflict) as raised:
        story.do(c.RecordRequirement(RID, "Other", "Other"), AGENT)
    assert raised.value.code == "requirement_awaits_confirmation"
    [confirmed] = story.do(c.ConfirmRequirement(RID), REQUESTER)
    assert confirmed.version == 2 and story.state.requirement.confirmed
    story.do(c.ResolveRequest(RID, "Delivered"), AGENT)


def test_a_change_proposed_by_a_colleague_needs_the_requesters_confirmation() -> None:
    story = assessed_change(COLLEAGUE)
    [approved] = story.do(c.ApproveRequirementChange(RID, "CH-1"), MANAGER)
    assert approved.requires_confirmation and not story.state.requirement.confirmed
    with pytest.raises(Conflict) as raised:
        story.do(c.StartWork(RID), AGENT)
    assert raised.value.code == "requirement_not_confirmed"


def test_a_change_the_requester_proposed_is_their_agreement() -> None:
    story = assessed_change(REQUESTER)
    [approved] = story.do(c.ApproveRequirementChange(RID, "CH-1"), MANAGER)
    assert not approved.requires_confirmation
    assert (story.state.requirement.version, story.state.requirement.confirmed) == (2, True)
    story.do(c.StartWork(RID), AGENT)


# --- 2. pending requirement changes at resolve ----------------------------------------------------------


@pytest.mark.parametrize("assess", [False, True], ids=["proposed", "assessed"])
def test_resolve_is_refused_while_a_requirement_change_is_pending(assess: bool) -> None:
    story = confirmed_service_request()
    story.do(c.StartWork(RID), AGENT)
    story.do(c.ProposeRequirementChange(RID, "CH-1", "More", "More", "Why not"), REQUESTER)
    if assess:
        story.do(c.AssessRequirementChange(RID, "CH-1", 1, "Small"), AGENT)
    with pytest.raises(Conflict) as raised:
        story.do(c.ResolveRequest(RID, "Done"), AGENT)
    assert raised.value.code == "requirement_change_pending"
    assert "CH-1" in raised.value.detail
    story.do(c.RejectRequirementChange(RID, "CH-1", "Out of scope"), MANAGER)
    story.do(c.ResolveRequest(RID, "Done"), AGENT)
    assert story.state.status is Status.resolved


# --- 3. reopen window and auto-close due times ------------------------------------------------------------

# A long holiday (1-8 October) right after the resolve: the auto-close lands after a 7-day window from resolve.
GOLDEN_WEEK = IntakePolicy(calendar=BusinessCalendar(holidays=frozenset(date(2025, 10, d) for d in range(1, 9))))
RESOLVED_AT = datetime(2025, 9, 30, 11, 0, tzinfo=TZ)
AUTO_CLOSE_DUE = datetime(2025, 10, 13, 11, 0, tzinfo=TZ)  # Thu 9, Fri 10, Mon 13 October


def auto_closed() -> Story:
    story = Story(GOLDEN_WEEK)
    story.do(submit(), REQUESTER, at=RESOLVED_AT - timedelta(hours=1))
    story.do(c.AcceptRequest(RID, team="desk"), AGENT)
    story.do(c.StartWork(RID), AGENT)
    [resolved] = story.do(c.ResolveRequest(RID, "Done"), AGENT, at=RESOLVED_AT)
    assert resolved.auto_close_due_at == AUTO_CLOSE_DUE
    story.do(c.AutoCloseRequest(RID), SYSTEM_ACTOR, at=AUTO_CLOSE_DUE + timedelta(seconds=2))
    return story


def test_an_auto_closed_request_can_be_reopened_for_the_window_after_it_closed() -> None:
    story = auto_closed()
    closed_at = story.state.closed_at
    assert closed_at > RESOLVED_AT + timedelta(days=7)
    [reopened] = story.do(c.ReopenRequest(RID, "Broke again"), REQUESTER, at=closed_at + timedelta(days=7))
    assert reopened.from_status is Status.closed


def test_the_window_after_an_auto_close_ends_the_configured_days_after_the_close() -> None:
    story = auto_closed()
    with pytest.raises(Conflict) as raised:
        story.do(c.ReopenRequest(RID, "Late"), REQUESTER, at=story.state.closed_at + timedelta(days=7, microseconds=1))
    assert raised.value.code == "reopen_window_expired"


def test_an_accepted_delivery_keeps_the_window_from_the_resolve() -> None:
    story = Story(GOLDEN_WEEK)
    story.do(submit(), REQUESTER, at=RESOLVED_AT - timedelta(hours=1))
    story.do(c.AcceptRequest(RID, team="desk"), AGENT)
    story.do(c.StartWork(RID), AGENT)
    story.do(c.ResolveRequest(RID, "Done"), AGENT, at=RESOLVED_AT)
    story.do(c.AcceptDelivery(RID), REQUESTER, at=RESOLVED_AT + timedelta(days=2))
    with pytest.raises(Conflict):
        story.do(c.ReopenRequest(RID, "Late"), REQUESTER, at=RESOLVED_AT + timedelta(days=7, seconds=1))


def _resolved_at(moment: datetime, policy: IntakePolicy) -> datetime:
    story = Story(policy)
    story.do(submit(), REQUESTER, at=moment - timedelta(hours=1))
    story.do(c.AcceptRequest(RID, team="desk"), AGENT)
    story.do(c.StartWork(RID), AGENT)
    [resolved] = story.do(c.ResolveRequest(RID, "Done"), AGENT, at=moment)
    return resolved.auto_close_due_at


@pytest.mark.parametrize(
    ("resolved", "due"),
    [
        (datetime(2025, 9, 1, 20, 0, tzinfo=TZ), datetime(2025, 9, 5, 9, 0, tzinfo=TZ)),  # Monday evening
        (datetime(2025, 9, 6, 10, 0, tzinfo=TZ), datetime(2025, 9, 11, 9, 0, tzinfo=TZ)),  # Saturday
        (datetime(2025, 9, 2, 7, 30, tzinfo=TZ), datetime(2025, 9, 5, 9, 0, tzinfo=TZ)),  # Tuesday before opening
        (datetime(2025, 9, 2, 18, 0, tzinfo=TZ), datetime(2025, 9, 5, 18, 0, tzinfo=TZ)),  # at closing time
    ],
)
def test_auto_close_is_due_in_working_hours(resolved: datetime, due: datetime) -> None:
    assert _resolved_at(resolved, IntakePolicy()) == due


def test_auto_close_due_times_lie_in_working_hours_and_never_go_backwards() -> None:
    calendar = GOLDEN_WEEK.calendar
    moment, previous = datetime(2025, 9, 24, 0, 0, tzinfo=TZ), None
    while moment < datetime(2025, 10, 14, tzinfo=TZ):
        due = _resolved_at(moment, GOLDEN_WEEK)
        local = due.astimezone(calendar.zone)
        assert calendar.is_working_day(local.date()), (moment, due)
        assert time(9, 0) <= local.time() <= time(18, 0), (moment, due)
        assert due >= moment
        assert previous is None or due >= previous, (moment, due, previous)
        moment, previous = moment + timedelta(minutes=90), due


# --- 4. contradictory links -------------------------------------------------------------------------------


def linked(*link_types: LinkType) -> Story:
    story = Story()
    story.do(submit(), REQUESTER)
    for link_type in link_types:
        story.do(c.LinkRequest(RID, "REQ-2", link_type), AGENT)
    return story


CONTRADICTIONS = [
    (LinkType.parent_of, LinkType.child_of),
    (LinkType.duplicate_of, LinkType.parent_of),
    (LinkType.duplicate_of, LinkType.child_of),
    (LinkType.duplicate_of, LinkType.caused_by),
]


@pytest.mark.parametrize(("first", "second"), CONTRADICTIONS + [(b, a) for a, b in CONTRADICTIONS],
                         ids=lambda t: t.value)
def test_contradictory_links_to_the_same_request_are_refused(first: LinkType, second: LinkType) -> None:
    story = linked(first)
    with pytest.raises(Conflict) as raised:
        story.do(c.LinkRequest(RID, "REQ-2", second), AGENT)
    assert raised.value.code == "contradictory_link"
    assert first.value in raised.value.detail
    assert [link.link_type for link in story.state.links] == [first]


@pytest.mark.parametrize(("first", "second"), [(LinkType.child_of, LinkType.caused_by),
                                               (LinkType.parent_of, LinkType.caused_by)], ids=lambda t: t.value)
def test_compatible_links_to_the_same_request_are_accepted(first: LinkType, second: LinkType) -> None:
    assert len(linked(first, second).state.links) == 2


def test_links_to_different_requests_never_contradict() -> None:
    story = linked(LinkType.parent_of)
    story.do(c.LinkRequest(RID, "REQ-3", LinkType.child_of), AGENT)
    assert len(story.state.links) == 2


def test_a_contradiction_removed_is_no_longer_one() -> None:
    story = linked(LinkType.parent_of)
    story.do(c.UnlinkRequest(RID, "REQ-2", LinkType.parent_of), AGENT)
    story.do(c.LinkRequest(RID, "REQ-2", LinkType.child_of), AGENT)


# --- 5. the domain refuses what the API refuses -------------------------------------------------------------


def in_progress() -> Story:
    story = Story()
    story.do(submit(), REQUESTER)
    story.do(c.AcceptRequest(RID, team="desk"), AGENT)
    story.do(c.StartWork(RID), AGENT)
    return story


@pytest.mark.parametrize(
    ("command", "actor", "field"),
    [
        (lambda text: c.CancelRequest(RID, text), REQUESTER, "reason"),
        (lambda text: c.OverridePriority(RID, "P1", text), AGENT, "reason"),
        (lambda text: c.AssignRequest(RID, "net", reason=text), AGENT, "reason"),
        (lambda text: c.LogTime(RID, "T-1", 5, note=text), AGENT, "note"),
    ],
    ids=["cancel", "priority", "assign", "time-note"],
)
def test_the_domain_refuses_a_reason_longer_than_the_api_allows(command, actor: Actor, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        in_progress().do(command("x" * 2_001), actor)
    assert raised.value.field == field
    in_progress().do(command("x" * 2_000), actor)


def test_the_domain_refuses_a_change_id_longer_than_the_api_allows() -> None:
    story = confirmed_service_request()
    with pytest.raises(InvalidInput) as raised:
        story.do(c.ProposeRequirementChange(RID, "c" * 65, "S", "C", "R"), REQUESTER)
    assert raised.value.field == "change_id"


def test_the_domain_refuses_more_watchers_than_the_api_allows() -> None:
    with pytest.raises(InvalidInput) as raised:
        Story().do(submit(watchers=tuple(f"u-{i}" for i in range(51))), REQUESTER)
    assert raised.value.field == "watchers"


def test_the_domain_refuses_more_effort_than_the_api_allows() -> None:
    story = confirmed_service_request()
    story.do(c.ProposeRequirementChange(RID, "CH-1", "S", "C", "R"), REQUESTER)
    with pytest.raises(InvalidInput) as raised:
        story.do(c.AssessRequirementChange(RID, "CH-1", 100_001, "Huge"), AGENT)
    assert raised.value.field == "effort_hours"


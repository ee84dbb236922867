"""Who may do what, requirement and approval flows, input validation and collaboration."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from intake_story import (
    ADMIN,
    AGENT,
    AUDITOR,
    COLLEAGUE,
    LEAD,
    MANAGER,
    POLICY,
    REQUESTER,
    RID,
    RISK_OFFICER,
    STRANGER,
    T0,
    Story,
    submit_command,
)

from opsat.common.domain import (
    Actor,
    AlreadyExists,
    CommandContext,
    Conflict,
    Forbidden,
    InvalidInput,
    InvalidTransition,
    NotFound,
    Role,
)
from opsat.intake.domain import commands as c
from opsat.intake.domain import decide
from opsat.intake.domain import events as e
from opsat.intake.domain.policy import IntakePolicy
from opsat.intake.domain.values import ApprovalState, ChangeState, Channel, LinkType, Priority, RequestKind, Status


def submit(**changes) -> c.SubmitRequest:
    return submit_command(dict(title="VPN drops", description="The VPN disconnects every ten minutes.", impact=2, urgency=2), changes)


def submitted(**changes) -> Story:
    story = Story()
    story.do(submit(**changes), REQUESTER)
    return story


def in_progress(**changes) -> Story:
    story = submitted(**changes)
    story.do(c.AcceptRequest(RID, team="desk"), AGENT)
    story.do(c.StartWork(RID), AGENT)
    return story


def resolved() -> Story:
    story = in_progress()
    story.do(c.ResolveRequest(RID, "New VPN profile"), AGENT)
    return story


# --- roles ---------------------------------------------------------------------------------------


STAFF_ONLY = [
    c.AcceptRequest(RID, team="desk"),
    c.RejectRequest(RID, "No"),
    c.StartWork(RID),
    c.RequestCustomerInfo(RID, "?"),
    c.ResolveRequest(RID, "Done"),
    c.OverridePriority(RID, Priority.P1, "Urgent"),
    c.RecordRequirement(RID, "S", "C"),
    c.AssessRequirementChange(RID, "CH-1", 1, "Small"),
    c.AssignRequest(RID, "network"),
    c.AddInternalNote(RID, "N-1", "Hm"),
    c.LinkRequest(RID, "REQ-2", LinkType.caused_by),
    c.UnlinkRequest(RID, "REQ-2", LinkType.caused_by),
    c.LogTime(RID, "T-1", 10),
    c.AutoCloseRequest(RID),
]
MANAGER_ONLY = [
    c.ApproveRequest(RID),
    c.DeclineRequest(RID, "No"),
    c.ApproveRequirementChange(RID, "CH-1"),
    c.RejectRequirementChange(RID, "CH-1", "No"),
]
REQUESTER_ONLY = [
    c.AcceptDelivery(RID),
    c.RejectDelivery(RID, "No"),
    c.ReopenRequest(RID, "Again"),
    c.CancelRequest(RID, "Not needed"),
    c.ConfirmRequirement(RID),
]


@pytest.mark.parametrize("command", STAFF_ONLY + MANAGER_ONLY, ids=lambda cmd: type(cmd).__name__)
def test_requesters_may_not_do_the_service_desks_work(command) -> None:
    with pytest.raises(Forbidden):
        submitted().do(command, REQUESTER)


@pytest.mark.parametrize("command", MANAGER_ONLY + REQUESTER_ONLY, ids=lambda cmd: type(cmd).__name__)
@pytest.mark.parametrize("actor", [AGENT, LEAD], ids=["agent", "team_lead"])
def test_agents_may_not_approve_nor_speak_for_the_requester(command, actor: Actor) -> None:
    with pytest.raises(Forbidden):
        submitted().do(command, actor)


@pytest.mark.parametrize("actor", [AGENT, LEAD, MANAGER, ADMIN])
def test_auto_close_is_for_service_accounts_only(actor: Actor) -> None:
    with pytest.raises(Forbidden):
        resolved().do(c.AutoCloseRequest(RID), actor)


@pytest.mark.parametrize("actor", [AUDITOR, RISK_OFFICER], ids=["auditor", "risk_officer"])
@pytest.mark.parametrize("command", list(c.INTAKE_COMMANDS), ids=lambda cls: cls.__name__)
def test_auditors_and_risk_officers_issue_no_intake_command(command: type, actor: Actor) -> None:
    # Forbidden comes from the role alone, before the state is even looked at.
    sample = submit() if command is c.SubmitRequest else next(
        cmd for cmd in STAFF_ONLY + MANAGER_ONLY + REQUESTER_ONLY + COLLABORATION if type(cmd) is command
    )
    with pytest.raises(Forbidden):
        decide(None, sample, CommandContext(actor, T0), POLICY)


COLLABORATION = [
    c.ProvideCustomerInfo(RID, "Answer"),
    c.ProposeRequirementChange(RID, "CH-9", "S", "C", "R"),
    c.AddReply(RID, "M-9", "Hello"),
    c.AddWatcher(RID, "u-amy"),
    c.RemoveWatcher(RID, "u-amy"),
]


@pytest.mark.parametrize("command", REQUESTER_ONLY + COLLABORATION, ids=lambda cmd: type(cmd).__name__)
def test_another_organisations_request_does_not_exist_for_a_requester(command) -> None:
    with pytest.raises(NotFound) as raised:
        submitted().do(command, STRANGER)
    assert raised.value.detail == f"service request {RID!r} not found"


def test_an_unknown_request_is_not_found() -> None:
    with pytest.raises(NotFound):
        decide(None, c.AcceptRequest("REQ-404", team="desk"), CommandContext(AGENT, T0), POLICY)


@pytest.mark.parametrize("command", REQUESTER_ONLY, ids=lambda cmd: type(cmd).__name__)
def test_a_colleague_may_not_decide_for_the_requester(command) -> None:
    with pytest.raises(Forbidden):
        submitted().do(command, COLLEAGUE)


def test_a_colleague_may_reply_and_answer_questions() -> None:
    story = in_progress()
    story.do(c.RequestCustomerInfo(RID, "Which laptop?"), AGENT)
    story.do(c.ProvideCustomerInfo(RID, "The ThinkPad"), COLLEAGUE)
    story.do(c.AddReply(RID, "M-1", "Thanks!"), COLLEAGUE)
    assert story.state.status is Status.in_progress


def test_staff_may_record_an_answer_given_by_phone() -> None:
    story = in_progress()
    story.do(c.RequestCustomerInfo(RID, "Which laptop?"), AGENT)
    [event] = story.do(c.ProvideCustomerInfo(RID, "The ThinkPad (by phone)"), AGENT)
    assert event.by == AGENT.id


def test_staff_work_across_organisations() -> None:
    story = submitted()
    [event] = story.do(c.AcceptRequest(RID, team="desk", assignee=AGENT.id), AGENT)
    assert event == e.RequestAccepted(request_id=RID, at=story.now, by=AGENT.id, team="desk", assignee=AGENT.id)


# --- submit -----------------------------------------------------------------------------------


def test_a_requester_submits_for_themselves_only() -> None:
    with pytest.raises(Forbidden) as raised:
        Story().do(submit(requester_id=COLLEAGUE.id), REQUESTER)
    assert raised.value.field == "requester_id"


def test_a_requester_submits_for_their_own_organisation_only() -> None:
    with pytest.raises(Forbidden) as raised:
        Story().do(submit(organisation_id="org-other"), REQUESTER)
    assert raised.value.field == "organisation_id"


def test_an_agent_submits_on_behalf_of_a_caller() -> None:
    [event] = Story().do(submit(channel=Channel.phone), AGENT)
    assert (event.by, event.requester_id, event.channel) == (AGENT.id, REQUESTER.id, Channel.phone)


def test_monitoring_submits_incidents_through_a_service_account() -> None:
    monitoring = Actor("svc-zabbix", "provider", frozenset({Role.service}))
    [event] = Story().do(submit(channel="monitoring", kind="incident", impact=1, urgency=1), monitoring)
    assert (event.channel, event.kind, event.priority) == (Channel.monitoring, RequestKind.incident, Priority.P1)


def test_submitting_an_existing_id_again_is_a_conflict() -> None:
    with pytest.raises(AlreadyExists) as raised:
        submitted().do(submit(), REQUESTER)
    assert raised.value.field == "request_id"


def test_priority_comes_from_the_configured_matrix() -> None:
    strict = IntakePolicy.from_mapping({"priority_matrix": {"P1": [[1, 1], [2, 2]]}})
    story = Story(strict)
    story.do(submit(impact=2, urgency=2), REQUESTER)
    assert story.state.priority is Priority.P1
    assert submitted(impact=2, urgency=2).state.priority is Priority.P3


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"description": "x" * 20_001}, "description"),
        ({"impact": 0}, "impact"),
        ({"impact": 4}, "impact"),
        ({"impact": "1"}, "impact"),
        ({"urgency": True}, "urgency"),
        ({"urgency": None}, "urgency"),
        ({"kind": "upgrade"}, "kind"),
        ({"channel": "fax"}, "channel"),
        ({"request_id": ""}, "request_id"),
        ({"watchers": ("u-amy", "u-amy")}, "watchers"),
        ({"watchers": ("",)}, "watchers"),
        ({"watchers": "u-amy"}, "watchers"),
        ({"requires_approval": "yes"}, "requires_approval"),
    ],
)
def test_submit_validates_its_input(changes: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        Story().do(submit(**changes), REQUESTER)
    assert raised.value.field == field


@pytest.mark.parametrize(("changes", "field"), [({"customer_tier": ""}, "customer_tier"), ({"team": ""}, "team")])
def test_staff_submitting_on_a_requester_s_behalf_name_tier_and_team_properly(changes: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        Story().do(submit(**changes), AGENT)
    assert raised.value.field == field


@pytest.mark.parametrize("changes", [{"customer_tier": "platinum"}, {"team": "network"}],
                         ids=["customer_tier", "team"])
def test_a_requester_does_not_choose_the_fields_that_drive_service_levels_and_routing(changes: dict) -> None:
    with pytest.raises(Forbidden) as raised:
        Story().do(submit(**changes), REQUESTER)
    assert raised.value.field == next(iter(changes))


def test_the_customer_tier_comes_from_the_organisation_s_policy() -> None:
    [event] = Story(IntakePolicy(customer_tier="gold")).do(submit(), REQUESTER)
    assert event.customer_tier == "gold"
    [event] = Story().do(submit(customer_tier="silver"), AGENT)
    assert event.customer_tier == "silver"


@pytest.mark.parametrize("title", ["\u200b\u200b", "\u2800", "\u3164 \u200d", "\ufeff\u2060",
                                   "invoice \u202epaid\u202c", "ok \u2066x\u2069"],
                         ids=["zero-width", "braille blank", "filler", "bom and joiner", "bidi override",
                              "bidi isolate"])
def test_a_title_of_invisible_or_bidi_control_characters_is_refused(title: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        Story().do(submit(title=title), REQUESTER)
    assert raised.value.field == "title"


def test_a_title_with_marks_joiners_and_any_script_is_fine() -> None:
    for title in ("VPN 断线", "café\u0301", "👩\u200d💻 laptop", "שלום VPN"):
        [event] = Story().do(submit(title=title), REQUESTER)
        assert event.title == title


def test_a_scoped_service_account_submits_only_for_its_organisations() -> None:
    monitoring = Actor("monitoring", "ops", frozenset({Role.service}), scope=frozenset({"acme"}))
    with pytest.raises(Forbidden) as raised:
        Story().do(submit(organisation_id="globex"), monitoring)
    assert raised.value.field == "organisation_id"
    [event] = Story().do(submit(organisation_id="acme"), monitoring)
    assert event.organisation_id == "acme"


def test_a_scoped_service_account_does_not_find_other_organisations_requests() -> None:
    story = Story()
    story.do(submit(organisation_id=REQUESTER.organisation), REQUESTER)
    other = Actor("monitoring", "ops", frozenset({Role.service}), scope=frozenset({"elsewhere"}))
    with pytest.raises(NotFound):
        story.do(c.AutoCloseRequest(RID), other)


def test_submit_accepts_the_limits() -> None:
    [event] = Story().do(submit(title="x" * 200, description="", kind="consultation"), REQUESTER)
    assert event.kind is RequestKind.consultation and len(event.title) == 200


# --- priority override ------------------------------------------------------------------------------


def test_an_agent_overrides_the_priority_with_a_reason() -> None:
    story = submitted()
    [event] = story.do(c.OverridePriority(RID, "P1", "Whole sales team affected"), AGENT)
    assert (event.priority, event.previous_priority) == (Priority.P1, Priority.P3)
    assert (story.state.priority, story.state.priority_overridden) == (Priority.P1, True)


@pytest.mark.parametrize(
    ("command", "error", "field"),
    [
        (c.OverridePriority(RID, Priority.P1, " "), InvalidInput, "reason"),
        (c.OverridePriority(RID, "P0", "Why not"), InvalidInput, "priority"),
        (c.OverridePriority(RID, Priority.P3, "Same"), Conflict, None),
    ],
)
def test_override_needs_a_reason_and_a_new_priority(command, error: type, field: str | None) -> None:
    with pytest.raises(error) as raised:
        submitted().do(command, AGENT)
    assert raised.value.field == field


# --- requirement --------------------------------------------------------------------------------------


def accepted_service_request() -> Story:
    story = submitted(kind=RequestKind.service_request)
    story.do(c.AcceptRequest(RID, team="desk"), AGENT)
    return story


def confirmed_requirement() -> Story:
    story = accepted_service_request()
    story.do(c.RecordRequirement(RID, "New laptop", "Laptop delivered and enrolled"), AGENT)
    story.do(c.ConfirmRequirement(RID), REQUESTER)
    return story


def test_work_on_a_service_request_waits_for_a_confirmed_requirement() -> None:
    story = accepted_service_request()
    with pytest.raises(Conflict) as raised:
        story.do(c.StartWork(RID), AGENT)
    assert raised.value.code == "requirement_not_confirmed"
    story.do(c.RecordRequirement(RID, "Laptop", "Delivered"), AGENT)
    with pytest.raises(Conflict):
        story.do(c.StartWork(RID), AGENT)
    story.do(c.RecordRequirement(RID, "New laptop", "Laptop delivered and enrolled"), AGENT)
    [event] = story.do(c.ConfirmRequirement(RID), REQUESTER)
    assert event.version == 1
    story.do(c.StartWork(RID), AGENT)
    assert story.state.status is Status.in_progress
    assert story.state.requirement.scope == "New laptop"


def test_an_incident_needs_no_requirement() -> None:
    assert in_progress().state.status is Status.in_progress


def test_which_kinds_need_a_requirement_is_configuration() -> None:
    story = Story(IntakePolicy(requirement_confirmation_kinds=frozenset({RequestKind.incident})))
    story.do(submit(), REQUESTER)
    story.do(c.AcceptRequest(RID, team="desk"), AGENT)
    with pytest.raises(Conflict):
        story.do(c.StartWork(RID), AGENT)


@pytest.mark.parametrize(
    ("story", "command", "actor", "code"),
    [
        (accepted_service_request, c.ConfirmRequirement(RID), REQUESTER, "no_requirement"),
        (confirmed_requirement, c.ConfirmRequirement(RID), REQUESTER, "requirement_confirmed"),
        (confirmed_requirement, c.RecordRequirement(RID, "Other", "Other"), AGENT, "requirement_confirmed"),
        (
            accepted_service_request,
            c.ProposeRequirementChange(RID, "CH-1", "S", "C", "R"),
            REQUESTER,
            "requirement_not_confirmed",
        ),
    ],
)
def test_requirement_conflicts(story, command, actor: Actor, code: str) -> None:
    with pytest.raises(Conflict) as raised:
        story().do(command, actor)
    assert raised.value.code == code


def test_an_approved_change_bumps_the_requirement_version() -> None:
    story = confirmed_requirement()
    story.do(c.ProposeRequirementChange(RID, "CH-1", "Laptop and dock", "Both delivered", "Needs a dock"), REQUESTER)
    assert story.state.requirement_changes["CH-1"].base_version == 1
    story.do(c.AssessRequirementChange(RID, "CH-1", 1.5, "One more item"), AGENT)
    [event] = story.do(c.ApproveRequirementChange(RID, "CH-1"), MANAGER)
    assert (event.version, event.scope, event.acceptance_criteria) == (2, "Laptop and dock", "Both delivered")
    requirement = story.state.requirement
    assert (requirement.version, requirement.scope, requirement.confirmed) == (2, "Laptop and dock", True)
    assert story.state.requirement_changes["CH-1"].state is ChangeState.approved


def test_a_change_is_decided_only_from_the_right_state() -> None:
    story = confirmed_requirement()
    story.do(c.ProposeRequirementChange(RID, "CH-1", "S", "C", "R"), AGENT)
    with pytest.raises(InvalidTransition, match="allowed from: assessed"):
        story.do(c.ApproveRequirementChange(RID, "CH-1"), MANAGER)
    story.do(c.AssessRequirementChange(RID, "CH-1", 0, "None"), AGENT)
    with pytest.raises(InvalidTransition):
        story.do(c.AssessRequirementChange(RID, "CH-1", 1, "Again"), AGENT)
    story.do(c.RejectRequirementChange(RID, "CH-1", "Not now"), MANAGER)
    with pytest.raises(InvalidTransition):
        story.do(c.RejectRequirementChange(RID, "CH-1", "Twice"), MANAGER)
    assert story.state.requirement.version == 1


def test_a_change_proposed_against_an_old_version_cannot_be_approved() -> None:
    story = confirmed_requirement()
    for change_id in ("CH-1", "CH-2"):
        story.do(c.ProposeRequirementChange(RID, change_id, "S " + change_id, "C", "R"), REQUESTER)
        story.do(c.AssessRequirementChange(RID, change_id, 1, "Small"), AGENT)
    story.do(c.ApproveRequirementChange(RID, "CH-1"), MANAGER)
    with pytest.raises(Conflict) as raised:
        story.do(c.ApproveRequirementChange(RID, "CH-2"), MANAGER)
    assert raised.value.code == "requirement_change_stale"


@pytest.mark.parametrize(
    ("command", "error", "field"),
    [
        (c.AssessRequirementChange(RID, "CH-404", 1, "x"), NotFound, "change_id"),
        (c.AssessRequirementChange(RID, "CH-1", -1, "x"), InvalidInput, "effort_hours"),
        (c.AssessRequirementChange(RID, "CH-1", float("nan"), "x"), InvalidInput, "effort_hours"),
        (c.AssessRequirementChange(RID, "CH-1", 1, ""), InvalidInput, "impact_summary"),
        (c.ProposeRequirementChange(RID, "CH-1", "S", "C", "R"), AlreadyExists, "change_id"),
        (c.ProposeRequirementChange(RID, "CH-2", "", "C", "R"), InvalidInput, "scope"),
        (c.ProposeRequirementChange(RID, "CH-2", "S", "C", ""), InvalidInput, "reason"),
    ],
)
def test_requirement_change_input(command, error: type, field: str) -> None:
    story = confirmed_requirement()
    story.do(c.ProposeRequirementChange(RID, "CH-1", "S", "C", "R"), REQUESTER)
    with pytest.raises(error) as raised:
        story.do(command, AGENT)
    assert raised.value.field == field


# --- approval -------------------------------------------------------------------------------------------


def change_ready_to_start() -> Story:
    story = submitted(kind=RequestKind.change)
    story.do(c.AcceptRequest(RID, team="cab"), AGENT)
    story.do(c.RecordRequirement(RID, "Upgrade firewall", "No downtime"), AGENT)
    story.do(c.ConfirmRequirement(RID), REQUESTER)
    return story


def test_a_change_waits_for_a_managers_approval() -> None:
    story = change_ready_to_start()
    assert story.state.approval is ApprovalState.pending
    with pytest.raises(Conflict) as raised:
        story.do(c.StartWork(RID), AGENT)
    assert raised.value.code == "approval_pending"
    story.do(c.ApproveRequest(RID, "Friday night window"), MANAGER)
    story.do(c.StartWork(RID), AGENT)
    assert (story.state.approval, story.state.status) == (ApprovalState.approved, Status.in_progress)


def test_a_declined_approval_rejects_the_request() -> None:
    story = change_ready_to_start()
    [event] = story.do(c.DeclineRequest(RID, "Freeze period"), ADMIN)
    assert event.reason == "Freeze period"
    assert (story.state.approval, story.state.status) == (ApprovalState.declined, Status.rejected)


def test_approval_only_when_pending() -> None:
    story = submitted()
    assert story.state.approval is ApprovalState.not_required
    with pytest.raises(Conflict) as raised:
        story.do(c.ApproveRequest(RID), MANAGER)
    assert raised.value.code == "approval_not_pending"


def test_a_submit_may_ask_for_approval_but_not_waive_it() -> None:
    assert submitted(requires_approval=True).state.approval is ApprovalState.pending
    with pytest.raises(InvalidInput) as raised:
        Story().do(submit(kind=RequestKind.change, requires_approval=False), REQUESTER)
    assert raised.value.field == "requires_approval"


def test_nobody_approves_their_own_request() -> None:
    story = Story()
    story.do(submit(kind=RequestKind.change, requester_id="u-max", organisation_id="provider"), MANAGER)
    story.do(c.ApproveRequest(RID), ADMIN)  # someone else may
    story = Story()
    story.do(submit(kind=RequestKind.change, requester_id=MANAGER.id, organisation_id="provider"), MANAGER)
    with pytest.raises(Forbidden):
        story.do(c.ApproveRequest(RID), MANAGER)


def test_the_approval_catalogue_is_configuration() -> None:
    story = Story(IntakePolicy(approval_required_kinds=frozenset()))
    story.do(submit(kind=RequestKind.change), REQUESTER)
    assert story.state.approval is ApprovalState.not_required


# --- reasons and other input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("story", "command", "actor", "field"),
    [
        (submitted, c.RejectRequest(RID, ""), AGENT, "reason"),
        (submitted, c.CancelRequest(RID, "  "), REQUESTER, "reason"),
        (resolved, c.RejectDelivery(RID, ""), REQUESTER, "reason"),
        (submitted, c.AcceptRequest(RID), AGENT, "team"),
        (in_progress, c.ResolveRequest(RID, ""), AGENT, "solution"),
        (in_progress, c.RequestCustomerInfo(RID, ""), AGENT, "question"),
        (in_progress, c.AddReply(RID, "M-1", ""), AGENT, "body"),
        (in_progress, c.AddReply(RID, "", "Hi"), AGENT, "reply_id"),
        (in_progress, c.AddInternalNote(RID, "N-1", "x" * 20_001), AGENT, "body"),
        (in_progress, c.LinkRequest(RID, RID, LinkType.duplicate_of), AGENT, "target_id"),
        (in_progress, c.LinkRequest(RID, "REQ-2", "related_to"), AGENT, "link_type"),
        (in_progress, c.AssignRequest(RID, ""), AGENT, "team"),
        (in_progress, c.LogTime(RID, "T-1", 0), AGENT, "minutes"),
        (in_progress, c.LogTime(RID, "T-1", 1441), AGENT, "minutes"),
        (in_progress, c.LogTime(RID, "T-1", 1.5), AGENT, "minutes"),
        (in_progress, c.LogTime(RID, "T-1", 30, work_date=date(2025, 9, 2)), AGENT, "work_date"),
    ],
)
def test_commands_validate_their_input(story, command, actor: Actor, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        story().do(command, actor)
    assert raised.value.field == field


def test_accept_takes_the_team_chosen_at_submit() -> None:
    story = Story()
    story.do(submit(team="network"), AGENT)  # staff route it at submit, on the requester's behalf
    [event] = story.do(c.AcceptRequest(RID), AGENT)
    assert (event.team, event.assignee) == ("network", None)


def test_decide_needs_an_aware_clock_and_an_intake_command() -> None:
    with pytest.raises(ValueError):
        decide(None, submit(), CommandContext(REQUESTER, datetime(2025, 9, 1, 10)), POLICY)
    with pytest.raises(TypeError):
        decide(None, object(), CommandContext(REQUESTER, T0), POLICY)


# --- collaboration -------------------------------------------------------------------------------------


def test_a_requester_reply_while_awaiting_the_customer_resumes_work() -> None:
    story = in_progress()
    story.do(c.RequestCustomerInfo(RID, "Which laptop?"), AGENT)
    reply, provided = story.do(c.AddReply(RID, "M-1", "The ThinkPad"), REQUESTER)
    assert isinstance(reply, e.ReplyAdded) and reply.from_staff is False
    assert isinstance(provided, e.CustomerInfoProvided) and provided.answer == "The ThinkPad"
    assert story.state.status is Status.in_progress


def test_a_staff_reply_while_awaiting_the_customer_keeps_waiting() -> None:
    story = in_progress()
    story.do(c.RequestCustomerInfo(RID, "Which laptop?"), AGENT)
    [reply] = story.do(c.AddReply(RID, "M-1", "Reminder: which laptop?"), AGENT)
    assert reply.from_staff is True
    assert story.state.status is Status.awaiting_customer


def test_reply_and_note_ids_do_not_repeat() -> None:
    story = in_progress()
    story.do(c.AddReply(RID, "M-1", "Hello"), AGENT)
    with pytest.raises(AlreadyExists) as raised:
        story.do(c.AddInternalNote(RID, "M-1", "Hm"), AGENT)
    assert raised.value.field == "note_id"


def test_requesters_write_no_internal_notes() -> None:
    with pytest.raises(Forbidden):
        in_progress().do(c.AddInternalNote(RID, "N-1", "Psst"), REQUESTER)


def test_watchers() -> None:
    story = submitted()
    story.do(c.AddWatcher(RID, "u-boss"), REQUESTER)  # on their own request, anyone
    story.do(c.AddWatcher(RID, COLLEAGUE.id), COLLEAGUE)  # a colleague watches in their own name
    with pytest.raises(Forbidden):
        story.do(c.AddWatcher(RID, "u-third"), COLLEAGUE)
    with pytest.raises(Conflict):
        story.do(c.AddWatcher(RID, "u-boss"), AGENT)
    story.do(c.RemoveWatcher(RID, "u-boss"), AGENT)
    with pytest.raises(Conflict):
        story.do(c.RemoveWatcher(RID, "u-boss"), AGENT)
    assert story.state.watchers == {COLLEAGUE.id}


def test_reassignment_keeps_history_in_the_events() -> None:
    story = in_progress()
    [event] = story.do(c.AssignRequest(RID, "network", "u-nina", "VPN is theirs"), LEAD)
    assert (event.previous_team, event.previous_assignee) == ("desk", None)
    assert (event.team, event.assignee, event.reason) == ("network", "u-nina", "VPN is theirs")
    with pytest.raises(Conflict):
        story.do(c.AssignRequest(RID, "network", "u-nina"), LEAD)


def test_links() -> None:
    story = in_progress()
    story.do(c.LinkRequest(RID, "REQ-2", "parent_of"), AGENT)
    with pytest.raises(Conflict):
        story.do(c.LinkRequest(RID, "REQ-2", LinkType.parent_of), AGENT)
    story.do(c.LinkRequest(RID, "REQ-2", LinkType.caused_by), AGENT)  # another type is another link
    story.do(c.UnlinkRequest(RID, "REQ-2", LinkType.parent_of), AGENT)
    with pytest.raises(Conflict):
        story.do(c.UnlinkRequest(RID, "REQ-2", LinkType.parent_of), AGENT)
    assert story.state.links == {(LinkType.caused_by, "REQ-2")}


def test_time_is_summed_per_agent() -> None:
    story = in_progress()
    [event] = story.do(c.LogTime(RID, "T-1", 30, "diagnosis"), AGENT)
    assert event.work_date == date(2025, 9, 1)  # today in Shanghai
    story.do(c.LogTime(RID, "T-2", 1440, work_date=date(2025, 8, 29)), AGENT)
    story.do(c.LogTime(RID, "T-3", 1), LEAD)
    assert story.state.time_logged_minutes == {AGENT.id: 1470, LEAD.id: 1}
    with pytest.raises(AlreadyExists) as raised:
        story.do(c.LogTime(RID, "T-1", 5), AGENT)
    assert raised.value.field == "entry_id"

"""The feedback service's aggregates as the kit's command handler sees them: templates, contacts, campaigns,
surveys, follow-ups and improvement actions, several kinds of stream in one service (`AggregateSet`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from opsat.common.commands import AggregateSet
from opsat.common.domain import Actor, CommandContext, DomainEvent, Forbidden, Role
from opsat.common.eventstore import EventStore, StreamStore
from opsat.feedback.domain import campaigns, contacts, followups, improvements, surveys, templates
from opsat.feedback.domain import commands as c
from opsat.feedback.projections.queries import scores_in_window
from opsat.feedback.settings import FeedbackSettings

FOLLOW_UP_STAFF = (Role.agent, Role.team_lead, Role.manager, Role.admin)
CALLERS: dict[type, tuple[Role, ...]] = {
    c.DefineTemplate: (Role.admin,),
    c.LaunchCampaign: (Role.admin, Role.manager),
    c.RegisterContact: (Role.admin, Role.agent, Role.team_lead, Role.manager, Role.service),
    c.OpenFollowUp: (Role.requester, *FOLLOW_UP_STAFF, Role.service),  # a complaint
    c.RecordContact: FOLLOW_UP_STAFF,
    c.ResolveFollowUp: FOLLOW_UP_STAFF,
    c.RecordCustomerReaction: (Role.requester, *FOLLOW_UP_STAFF),
    c.ProposeImprovement: (Role.agent, Role.team_lead, Role.manager),
    c.ApproveImprovement: (Role.manager,),
    c.RecordImplementation: (Role.agent, Role.team_lead, Role.manager),
    c.VerifyImprovement: (Role.team_lead, Role.manager),  # and the action's own timer (service)
    c.CloseImprovement: (Role.team_lead, Role.manager),
    c.ReplanImprovement: (Role.team_lead, Role.manager),
}


def callers(command_cls: type) -> Sequence[Role]:
    """Who may issue a routed command (the rule below checks the rest)."""
    return CALLERS[command_cls]


def _check(command: Any, actor: Actor) -> None:
    if not actor.has(*CALLERS[type(command)]):
        raise Forbidden(f"{type(command).__name__} is not yours to issue")


class _ConfigAggregate:
    """Configuration of the caller's organisation (templates, campaigns): one domain module decides it."""

    decider: Any

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def tenant(self, state: Any, command: Any, actor: Actor) -> str:
        return actor.organisation

    def decide(self, state: Any, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        _check(command, ctx.actor)
        return self.decider.decide(state, command, ctx.now, ctx.actor.id)


class TemplateAggregate(_ConfigAggregate):
    stream_type = "survey_template"
    id_field = "template_id"
    commands = frozenset({c.DefineTemplate})
    evolve = staticmethod(templates.evolve)
    decider = templates


class ContactAggregate:
    stream_type = "contact"
    id_field = "contact_id"
    commands = frozenset({c.RegisterContact})
    evolve = staticmethod(contacts.evolve)

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def tenant(self, state: contacts.Contact | None, command: Any, actor: Actor) -> str:
        return state.organisation_id if state is not None else command.organisation_id

    def decide(self, state: Any, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        _check(command, ctx.actor)
        return contacts.decide(state, command, ctx.now, ctx.actor.id)


class CampaignAggregate(_ConfigAggregate):
    stream_type = "campaign"
    id_field = "campaign_id"
    commands = frozenset({c.LaunchCampaign})
    evolve = staticmethod(campaigns.evolve)
    decider = campaigns


class SurveyAggregate:
    """Issued, reminded, expired and mail attempts by the service itself; answered by whoever holds the token
    (the public endpoint is the only way in, and the token is the authority)."""

    stream_type = "survey"
    id_field = "survey_id"
    commands = frozenset({c.IssueSurvey, c.AnswerSurvey, c.RemindSurvey, c.ExpireSurvey, c.RecordMailAttempt})
    evolve = staticmethod(surveys.evolve)

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def tenant(self, state: surveys.Survey | None, command: Any, actor: Actor) -> str:
        return state.organisation_id if state is not None else getattr(command, "organisation_id", actor.organisation)

    def decide(self, state: Any, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        if not isinstance(command, c.AnswerSurvey) and not ctx.actor.has(Role.service):
            raise Forbidden("surveys move by the service's own reactions and timers")
        return surveys.decide(state, command, ctx.now)


class FollowUpAggregate:
    stream_type = "followup"
    id_field = "followup_id"
    commands = frozenset({c.OpenFollowUp, c.RecordContact, c.ResolveFollowUp, c.RecordCustomerReaction,
                          c.MarkFollowUpOverdue})
    evolve = staticmethod(followups.evolve)

    def __init__(self, settings: FeedbackSettings) -> None:
        self.settings = settings

    def tenant(self, state: followups.FollowUp | None, command: Any, actor: Actor) -> str:
        return state.organisation_id if state is not None else command.organisation_id

    def decide(self, state: Any, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        if isinstance(command, c.MarkFollowUpOverdue):
            if not ctx.actor.has(Role.service):
                raise Forbidden("overdue is flagged by the follow-up's timer")
        else:
            _check(command, ctx.actor)
        owner = self.settings.followup_owner_by_team.get(getattr(command, "team", None) or "",
                                                         self.settings.followup_default_owner)
        return followups.decide(state, command, ctx.now, ctx.actor.id, default_owner=owner,
                                due_after=timedelta(seconds=self.settings.followup_due_s))


class ImprovementAggregate:
    """Improvement actions of the caller's (the provider's) organisation. The check reads the satisfaction read
    model in `prepare`, so the decision itself stays pure."""

    stream_type = "improvement"
    id_field = "improvement_id"
    commands = frozenset({c.ProposeImprovement, c.ApproveImprovement, c.RecordImplementation, c.VerifyImprovement,
                          c.CloseImprovement, c.ReplanImprovement})
    evolve = staticmethod(improvements.evolve)

    def __init__(self, settings: FeedbackSettings) -> None:
        self.settings = settings

    def tenant(self, state: improvements.Improvement | None, command: Any, actor: Actor) -> str:
        return state.organisation_id if state is not None else command.organisation_id

    async def prepare(self, command: Any, state: improvements.Improvement | None, store: StreamStore) -> Any:
        if isinstance(command, c.ProposeImprovement) and command.followup_ids:
            known = [f for f in command.followup_ids if any(
                r.stream_type == FollowUpAggregate.stream_type for r in (await store.load(f))[:1])]
            return replace(command, known_followups=tuple(known))
        if isinstance(command, c.VerifyImprovement) and state is not None and state.status == "implemented" \
                and isinstance(store, EventStore):
            start, end = state.windows()
            before = await scores_in_window(store.engine, state.scope, start, state.implemented_at)
            after = await scores_in_window(store.engine, state.scope, state.implemented_at, end)
            return replace(command, before=improvements.figures(before), after=improvements.figures(after))
        return command

    def decide(self, state: Any, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        if not (isinstance(command, c.VerifyImprovement) and ctx.actor.has(Role.service)):
            _check(command, ctx.actor)
        return improvements.decide(state, command, ctx.now, ctx.actor.id,
                                   check_grace=timedelta(seconds=self.settings.improvement_verify_grace_s))


class FeedbackAggregates(AggregateSet):
    members = (TemplateAggregate, ContactAggregate, CampaignAggregate, SurveyAggregate, FollowUpAggregate,
               ImprovementAggregate)

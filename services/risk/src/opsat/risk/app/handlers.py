"""The risk service's aggregates as the kit's command handler sees them: risks, emergencies and three kinds of
configuration (signal rules, emergency plans, on-call rotas), in one service (`AggregateSet`).

Who may do what is declared here once (`CALLERS`); the routes admit the same roles. Only risk officers (and
administrators) accept a risk or stand an emergency down; auditors read everything and change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from opsat.common.commands import AggregateSet
from opsat.common.domain import Actor, CommandContext, DomainEvent, Forbidden, Role
from opsat.risk.domain import commands as c
from opsat.risk.domain import plans, register, rotas, signals
from opsat.risk.domain.register import Levels

RISK_WORKERS = (Role.team_lead, Role.manager, Role.risk_officer, Role.admin)
RISK_OFFICERS = (Role.risk_officer, Role.admin)
RESPONDERS = (Role.agent, Role.team_lead, Role.manager, Role.risk_officer, Role.admin)
COMMANDERS = (Role.manager, Role.risk_officer, Role.admin)
ROTA_KEEPERS = (Role.team_lead, Role.manager, Role.admin)
SYSTEM = (Role.service,)

CALLERS: dict[type, tuple[Role, ...]] = {
    c.IdentifyRisk: RISK_WORKERS, c.AssessRisk: RISK_WORKERS, c.PlanMitigation: RISK_WORKERS,
    c.RecordProgress: RISK_WORKERS, c.CloseRisk: RISK_WORKERS, c.AcceptRisk: RISK_OFFICERS,
    c.RecordSignal: SYSTEM,
    c.DefineRule: RISK_OFFICERS, c.DefinePlan: RISK_OFFICERS, c.DefineRota: ROTA_KEEPERS,
    c.AddOverride: ROTA_KEEPERS,
    c.ActivateEmergency: (*COMMANDERS, Role.service), c.CompleteStep: RESPONDERS, c.StandDown: RISK_OFFICERS,
    c.RecordReview: COMMANDERS, c.CompleteReviewAction: RESPONDERS,
}


def callers(command_cls: type) -> Sequence[Role]:
    """Who may issue a routed command (the route's guard and the aggregate's check read the same table)."""
    return tuple(r for r in CALLERS[command_cls] if r is not Role.service)


class _Member:
    def __init__(self, settings: Any) -> None:
        self.levels = Levels.from_mapping(settings.risk_levels)

    def tenant(self, state: Any, command: Any, actor: Actor) -> str:
        return actor.organisation  # the register is the provider's own: every staff member sees all of it

    def check(self, command: Any, ctx: CommandContext) -> None:
        if not ctx.actor.has(*CALLERS[type(command)]):
            raise Forbidden(f"{type(command).__name__} requires one of the roles: "
                            f"{', '.join(r.value for r in CALLERS[type(command)])}")


class RiskAggregate(_Member):
    stream_type = "risk"
    id_field = "risk_id"
    commands = frozenset({c.IdentifyRisk, c.AssessRisk, c.PlanMitigation, c.RecordProgress, c.AcceptRisk,
                          c.CloseRisk, c.RecordSignal})
    evolve = staticmethod(register.evolve)

    def decide(self, state: register.Risk | None, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        self.check(command, ctx)
        now, by = ctx.now, ctx.actor.id
        match command:
            case c.IdentifyRisk():
                return register.identify(command, self.levels, now, by)
            case c.AssessRisk():
                return register.assess(state, command, self.levels, now, by)
            case c.PlanMitigation():
                return register.plan_mitigation(state, command, now.astimezone(UTC).date(), now, by)
            case c.RecordProgress():
                return register.progress(state, command, now, by)
            case c.AcceptRisk():
                return register.accept(state, command, now, by)
            case c.CloseRisk():
                return register.close(state, command, now, by)
            case c.RecordSignal():
                return register.record_signal(state, command, self.levels, now, by)
        raise AssertionError(type(command))


class RuleAggregate(_Member):
    stream_type = "risk_rule"
    id_field = "rule_id"
    commands = frozenset({c.DefineRule})
    evolve = staticmethod(signals.evolve)

    def decide(self, state: Any, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        self.check(command, ctx)
        return signals.decide(state, command, ctx.now, ctx.actor.id)


class PlanAggregate(_Member):
    stream_type = "risk_plan"
    id_field = "plan_id"
    commands = frozenset({c.DefinePlan})
    evolve = staticmethod(plans.evolve_plan)

    def decide(self, state: Any, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        self.check(command, ctx)
        return plans.define_plan(state or plans.DEFAULT_PLANS.get(command.plan_id), command, ctx.now, ctx.actor.id)


class RotaAggregate(_Member):
    stream_type = "risk_rota"
    id_field = "rota_id"
    commands = frozenset({c.DefineRota, c.AddOverride})
    evolve = staticmethod(rotas.evolve)

    def decide(self, state: Any, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        self.check(command, ctx)
        if isinstance(command, c.DefineRota):
            return rotas.define(state, command, ctx.now, ctx.actor.id)
        return rotas.add_override(state, command, ctx.now, ctx.actor.id)


class EmergencyAggregate(_Member):
    stream_type = "risk_emergency"
    id_field = "emergency_id"
    commands = frozenset({c.ActivateEmergency, c.CompleteStep, c.StandDown, c.RecordReview, c.CompleteReviewAction})
    evolve = staticmethod(plans.evolve)

    def decide(self, state: Any, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        self.check(command, ctx)
        now, by = ctx.now, ctx.actor.id
        match command:
            case c.ActivateEmergency():
                return plans.activate(state, command, now, by)
            case c.CompleteStep():
                return plans.complete_step(state, command, now, by)
            case c.StandDown():
                return plans.stand_down(state, command, now, by)
            case c.RecordReview():
                return plans.record_review(state, command, now, by)
            case c.CompleteReviewAction():
                return plans.complete_action(state, command, now, by)
        raise AssertionError(type(command))


class RiskAggregates(AggregateSet):
    members = (RiskAggregate, RuleAggregate, PlanAggregate, RotaAggregate, EmergencyAggregate)

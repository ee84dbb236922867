"""The appraisal service's aggregates as the kit's command handler sees them: the KPI catalogue and the
appraisal periods, two kinds of stream in one service (`AggregateSet`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opsat.appraisal.domain import catalogues, periods
from opsat.appraisal.domain import commands as c
from opsat.common.commands import AggregateSet
from opsat.common.domain import Actor, CommandContext, DomainEvent, Forbidden, Role

CALLERS: dict[type, tuple[Role, ...]] = {
    c.DefineCatalogue: (Role.admin,),
    c.OpenPeriod: periods.MANAGERS,
    c.CalculatePeriod: periods.MANAGERS,
    c.AdjustScore: periods.MANAGERS,
    c.PublishPeriod: periods.MANAGERS,
    # An engineer appeals their own card (the domain checks whose); team leads and managers any.
    c.FileAppeal: (Role.agent, Role.team_lead, Role.manager, Role.admin),
    c.ReviewAppeal: periods.REVIEWERS,
    c.ClosePeriod: periods.MANAGERS,
}


def callers(command_cls: type) -> Sequence[Role]:
    return CALLERS[command_cls]


class CatalogueAggregate:
    stream_type = "appraisal_catalogue"
    id_field = "catalogue_id"
    commands = frozenset({c.DefineCatalogue})
    evolve = staticmethod(catalogues.evolve)

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def tenant(self, state: Any, command: Any, actor: Actor) -> str:
        return actor.organisation

    def decide(self, state: Any, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        if not ctx.actor.has(Role.admin):
            raise Forbidden("the KPI catalogue is changed by administrators")
        return catalogues.decide(state, command, ctx.now, ctx.actor.id)


class PeriodAggregate:
    stream_type = "appraisal_period"
    id_field = "period_id"
    commands = frozenset({c.OpenPeriod, c.CalculatePeriod, c.AdjustScore, c.PublishPeriod, c.FileAppeal,
                          c.ReviewAppeal, c.ClosePeriod})
    evolve = staticmethod(periods.evolve)

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def tenant(self, state: periods.Period | None, command: Any, actor: Actor) -> str:
        return state.organisation_id if state is not None else actor.organisation

    def decide(self, state: periods.Period | None, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        return periods.decide(state, command, ctx.actor, ctx.now)


class AppraisalAggregates(AggregateSet):
    members = (CatalogueAggregate, PeriodAggregate)

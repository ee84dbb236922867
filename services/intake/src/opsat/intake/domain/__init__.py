"""The pure domain of intake: service requests (服务请求 / 工单) from submit to close.

`decide(state, command, ctx, policy) -> events` and `evolve(state, event) -> state`; commands, events,
values and policy live in their own modules and are re-exported here for convenience.
"""

from opsat.intake.domain.aggregate import ServiceRequest, decide, evolve, replay
from opsat.intake.domain.commands import INTAKE_COMMANDS
from opsat.intake.domain.events import INTAKE_EVENTS, IntakeEvent
from opsat.intake.domain.policy import IntakePolicy

__all__ = [
    "INTAKE_COMMANDS",
    "INTAKE_EVENTS",
    "IntakeEvent",
    "IntakePolicy",
    "ServiceRequest",
    "decide",
    "evolve",
    "replay",
]

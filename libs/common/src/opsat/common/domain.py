"""Building blocks every service's pure domain uses: events, errors, actors.

Nothing here does I/O or knows about HTTP; `opsat.common.errors` maps the errors to
problem+json once for every service.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict


def _standard_library_time(value: object) -> object:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value  # pydantic's own reading, and its error
    return value


# An event's instant: ISO 8601 text read by the standard library, whose `datetime.timezone` C code reads directly.
# Pydantic's own reading gives its `TzInfo`, which each later use calls into (comparing, subtracting, asyncpg's and
# orjson's encoding): asyncpg took 2.4 µs to write such a time against 1.5 µs, and a replay writes each one thrice.
Instant = Annotated[AwareDatetime, BeforeValidator(_standard_library_time)]


class DomainEvent(BaseModel):
    """A fact that happened. Subclasses set `event_type` (dotted, past tense) and `schema_version`.

    The CloudEvents type on the wire is f"{event_type}.v{schema_version}".
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


class DomainError(Exception):
    """A command that the domain refuses. `field` names the offending input where there is one."""

    def __init__(self, detail: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.code = code or type(self).__name__


class InvalidInput(DomainError):
    """The command's values break a rule (HTTP 422)."""


class NotFound(DomainError):
    """The aggregate does not exist (HTTP 404)."""


class Conflict(DomainError):
    """The command does not fit the aggregate's current state (HTTP 409)."""


class NotDueYet(Conflict):
    """A time-driven command came before its time (HTTP 409); `due_at` says when to try again.

    Clocks of different machines disagree by a little, so a scheduler keeps the deadline and moves it
    to `due_at` instead of retiring it.
    """

    def __init__(self, detail: str, *, due_at: datetime, field: str | None = None, code: str | None = None) -> None:
        super().__init__(detail, field=field, code=code)
        self.due_at = due_at


class Gone(DomainError):
    """The resource existed and is no longer usable, e.g. an expired link (HTTP 410)."""


class InvalidTransition(Conflict):
    """The life cycle does not allow this step from the current status (HTTP 409)."""


class AlreadyExists(Conflict):
    """Creating an aggregate whose id is taken (HTTP 409)."""


class Forbidden(DomainError):
    """The actor may not do this (HTTP 403)."""


class PreconditionFailed(DomainError):
    """The client's If-Match names a version the stream is no longer (or never was) at (HTTP 412)."""


class Role(str, enum.Enum):
    requester = "requester"
    agent = "agent"
    team_lead = "team_lead"
    manager = "manager"
    risk_officer = "risk_officer"
    auditor = "auditor"
    admin = "admin"
    service = "service"  # service accounts: monitoring, other enterprise systems, schedulers


STAFF_ROLES = frozenset({Role.agent, Role.team_lead, Role.manager, Role.risk_officer, Role.admin, Role.service})
# Roles that act or read beyond the caller's own organisation: they count only from the provider's organisations.
PROVIDER_ROLES = STAFF_ROLES | {Role.auditor}
ALL_ORGANISATIONS = "*"


@dataclass(frozen=True)
class Tenancy:
    """Whose roles count (README "Tenancy"): the provider's organisations hold the staff and reader roles; a
    customer organisation's token holds at most `requester`. A service account is a subject of a provider
    organisation configured with the organisations it acts for (`*`: all); unconfigured, its role is dropped."""

    provider_organisations: frozenset[str] = frozenset()
    service_accounts: dict[str, frozenset[str]] = field(default_factory=dict, hash=False)

    def admit(self, organisation: str, subject: str, claimed: frozenset[Role]
              ) -> tuple[frozenset[Role], frozenset[str] | None]:
        """The roles that count and the organisations the actor acts for (None: every organisation)."""
        if organisation not in self.provider_organisations:
            return claimed - PROVIDER_ROLES, None
        roles, scope = set(claimed), None
        if Role.service in roles:
            served = self.service_accounts.get(subject)
            if not served:
                roles.discard(Role.service)
            elif ALL_ORGANISATIONS not in served:
                # A service account is only a service account: other roles would widen its scope.
                roles, scope = {Role.service}, frozenset(served)
        return frozenset(roles), scope


@dataclass(frozen=True)
class Actor:
    """Who issues a command: from the JWT on the API side, or a service account for policies."""

    id: str
    organisation: str
    roles: frozenset[Role] = field(default_factory=frozenset)
    name: str | None = None
    issuer: str = ""  # subjects are unique per issuer only
    # Organisations a scoped service account acts for; None: as its roles say (staff: all, others: their own).
    scope: frozenset[str] | None = None

    def has(self, *roles: Role) -> bool:
        return any(r in self.roles for r in roles)

    @property
    def is_staff(self) -> bool:
        return bool(self.roles & STAFF_ROLES)

    @property
    def reads_everything(self) -> bool:
        """Unscoped staff and auditors read across organisations (and internal notes); requesters do not."""
        return bool(self.roles & PROVIDER_ROLES) and self.scope is None

    def sees(self, organisation: str) -> bool:
        """Whether this organisation's data exists for the actor (another's is "not found", never "forbidden")."""
        if self.scope is not None:
            return organisation in self.scope
        return self.reads_everything or organisation == self.organisation


SYSTEM_ACTOR = Actor(id="system", organisation="*", roles=frozenset({Role.service}), name="opsat scheduler")


@dataclass(frozen=True)
class CommandContext:
    """What a decision may know besides state and command: who asks, and when (never read a clock in domain code)."""

    actor: Actor
    now: datetime

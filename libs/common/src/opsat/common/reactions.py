"""Reading other services' events without importing their code, and turning them into our commands.

`ForeignEvent` is the tolerant reader: a consumer declares only the fields it needs of a published
event type; unknown fields are ignored, and a newer schema version is accepted through an explicit
mapping to the declared shape (`upgrades`). `check_against_schema` (used in tests) proves the declared
fields exist in the publisher's JSON Schema.

`CommandReaction` issues one command of this service per matching event (`causationid` = the event's
id), written in the consumer's transaction with the event's processed mark (`CommandHandler.batch`):
a replayed topic issues nothing new, and a crash between the two cannot happen. Its dedupe table lives
in the `reactions` schema, outside the disposable read models. A reaction that reads more than the
event (or issues several commands) overrides `apply`, or `apply_batch` to take a consumer batch at once.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.common.commands import CommandHandler, CommandMeta
from opsat.common.consumer import ReceivedEvent, processed_events_table
from opsat.common.db import REACTIONS_SCHEMA
from opsat.common.domain import SYSTEM_ACTOR, Actor, DomainError

log = logging.getLogger(__name__)


def reaction_metadata() -> MetaData:
    """Tables of a reaction: only its processed event ids, kept apart from the read models."""
    metadata = MetaData(schema=REACTIONS_SCHEMA)
    processed_events_table(metadata, schema=REACTIONS_SCHEMA)
    return metadata


class ForeignEvent(BaseModel):
    """The fields this service needs of another service's event. Subclasses set `event_type` (without `.vN`),
    `versions` (schema versions read as they are) and optionally `upgrades` (version -> data mapping)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    versions: ClassVar[frozenset[int]] = frozenset({1})
    upgrades: ClassVar[Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {}

    @classmethod
    def matches(cls, received: ReceivedEvent) -> bool:
        return received.event_type == cls.event_type and (
            received.schema_version in cls.versions or received.schema_version in cls.upgrades)

    @classmethod
    def read(cls, received: ReceivedEvent) -> ForeignEvent:
        data = received.data
        if received.schema_version not in cls.versions:
            data = cls.upgrades[received.schema_version](dict(data))
        return cls.model_validate(data)


class ForeignReaders:
    """Tolerant readers in the shape of an event registry (`RunnerConfig.registries`): the consumer runner reads
    each record's data into the declared fields as it decodes the record, on a poll fetched ahead and outside the
    transaction, and hands the result over as `ReceivedEvent.event`. A schema version the reader does not take
    is left unread (None); data that does not fit makes the record undecodable (parked, as any poison)."""

    def __init__(self, readers: tuple[type[ForeignEvent], ...]) -> None:
        self._by_type = {reader.event_type: reader for reader in readers}

    def __contains__(self, event_type: str) -> bool:
        return event_type in self._by_type

    def decode(self, event_type: str, schema_version: int, data: dict[str, Any]) -> ForeignEvent | None:
        reader = self._by_type[event_type]
        if schema_version in reader.versions:
            return reader.model_validate(data)
        if schema_version in reader.upgrades:
            return reader.model_validate(reader.upgrades[schema_version](dict(data)))
        return None


def schemas_from_asyncapi(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """CloudEvents type -> JSON Schema of its data, from a publisher's AsyncAPI document (e.g. docs/events/)."""
    messages = document.get("components", {}).get("messages", {}).values()
    return {m["name"]: m["payload"]["properties"]["data"] for m in messages}


def check_against_schema(foreign: type[ForeignEvent], schemas: Mapping[str, dict[str, Any]]) -> list[str]:
    """Problems with `foreign` against the publisher's schemas (CloudEvents type -> JSON Schema of data)."""
    problems = []
    for version in sorted(foreign.versions):
        ce_type = f"{foreign.event_type}.v{version}"
        schema = schemas.get(ce_type)
        if schema is None:
            problems.append(f"{ce_type} is not published")
            continue
        published = schema.get("properties", {})
        for name, field in foreign.model_fields.items():
            if name not in published:
                problems.append(f"{ce_type} has no field {name!r}")
            elif field.is_required() and name not in schema.get("required", ()):
                problems.append(f"{ce_type} does not always carry {name!r}")
    return problems


class CommandReaction(ABC):
    """Base for event -> command reactions: set `name`, `sources` (service names), `command` (the class it
    issues) and implement `command_for(received)` returning the command, or None to ignore the event."""

    name: ClassVar[str]
    sources: ClassVar[tuple[str, ...]]
    command: ClassVar[type]
    actor: ClassVar[Actor] = SYSTEM_ACTOR
    # The foreign events it reads, read by the runner as it decodes a poll (see ForeignReaders).
    reads: ClassVar[tuple[type[ForeignEvent], ...]] = ()

    def __init__(self, *topics: str) -> None:
        self.topics = list(topics)
        self.metadata = reaction_metadata()
        self.handler: CommandHandler | None = None  # set by the service kit before the runner starts

    @abstractmethod
    def command_for(self, received: ReceivedEvent) -> Any | None:
        """The command this event calls for, or None."""

    def meta(self, received: ReceivedEvent) -> CommandMeta:
        """A command caused by `received`: its correlation carries on, its causation is the event."""
        return CommandMeta(correlation_id=received.correlation_id or received.id, causation_id=received.id)

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        command = self.command_for(received)
        if command is None:
            return
        assert self.handler is not None, "the service kit sets the handler"
        batch = self.handler.batch(conn)
        outcome = await batch.execute(command, self.actor, self.meta(received))
        if isinstance(outcome, DomainError):  # the domain says no (e.g. already done): a decision, not a failure
            log.info("reaction %s: %s refused for event %s: %s", self.name, type(command).__name__, received.id,
                     outcome.detail)
        await batch.commit()

"""The service kit: a service describes itself once, and this module builds the rest from the description.

From a `Service` come the FastAPI app, the worker's loops (outbox relay, projections, reactions,
deadlines), the Kafka topics, the CLI (`opsat-<name> api|worker|migrate|rebuild|redrive|asyncapi`) and
the migrations' location; `opsat.common.testing.service` gives tests the same pieces. A description
that does not hold together (a consumer of a topic the service does not declare, two consumers with one
name, a routed command without a rule) fails when it is built, that is when any process starts.

Consumers (projections and reactions) are classes with `name`, `sources` (the services whose topics
they read), `metadata` and `apply`; the kit builds each as `cls(*topics)`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from opsat.common import deadlines as deadline_table
from opsat.common.api import create_service_app
from opsat.common.commands import Aggregate, CommandHandler, CommandRouter, utcnow
from opsat.common.consumer import Projection, ProjectionRunner, RunnerConfig
from opsat.common.db import create_engine
from opsat.common.domain import DomainEvent
from opsat.common.envelope import EventRegistry
from opsat.common.eventstore import EventStore, StreamStore, run_idempotency_cleanup
from opsat.common.grouplag import run_group_lag
from opsat.common.kafka import ensure_topics
from opsat.common.outbox import OutboxRelay, RelayConfig
from opsat.common.reactions import CommandReaction, ForeignReaders
from opsat.common.settings import ServiceSettings
from opsat.common.worker import Loop

log = logging.getLogger(__name__)


class DescriptionError(ValueError):
    """The service description contradicts itself; the message names the part."""


@dataclass(frozen=True)
class Service:
    name: str
    description: str
    settings: type[ServiceSettings]
    events: Sequence[type[DomainEvent]]
    aggregate: Callable[[Any], Aggregate]  # built from the settings; its class names the `commands` it decides
    routers: Sequence[APIRouter]
    migrations: Path  # the service's alembic versions folder
    queries: Callable[[AsyncEngine], Any] | None = None
    projections: Sequence[type] = ()  # read models: rebuildable, in the read-model schema
    reactions: Sequence[type] = ()  # event -> command (CommandReaction) or event -> deadline
    deadlines: Mapping[str, type] = field(default_factory=dict)  # kind -> command built as cls(<id>=stream_id)
    consumes: Sequence[str] = ()  # other services whose topics this one reads
    # name -> factory(settings, engine, command handler) of an object whose `run(stop)` is a further worker loop
    loops: Mapping[str, Callable[[Any, AsyncEngine, CommandHandler], Loop]] = field(default_factory=dict)
    partitions: int = 6  # of this service's events topic (key = stream id)
    module: str = ""  # where `create_app` lives, for uvicorn's multi-process mode; default opsat.<name>.service

    def __post_init__(self) -> None:
        if not self.module:
            object.__setattr__(self, "module", f"opsat.{self.name}.service")
        self.check()

    # --- the description's own consistency -------------------------------------------------------------
    def check(self) -> None:
        registry = self.registry()  # duplicate event types raise here
        if not registry.event_classes:
            raise DescriptionError(f"service {self.name}: publishes no event type")
        names = [c.name for c in self.consumer_classes()]
        for name in {n for n in names if names.count(n) > 1}:
            raise DescriptionError(f"service {self.name}: two consumers are named {name!r}")
        readable = {self.name, *self.consumes}
        for cls in self.consumer_classes():
            for source in cls.sources:
                if source not in readable:
                    raise DescriptionError(f"service {self.name}: consumer {cls.name!r} reads the topic of "
                                           f"{source!r}, which the service does not declare in `consumes`")
        for cls in self.projections:  # monotone read models: the runner needs both tables
            names = {t.name for t in cls.metadata.tables.values()}
            for needed, helper in (("processed_events", "processed_events_table"),
                                   ("stream_versions", "stream_versions_table")):
                if needed not in names:
                    raise DescriptionError(f"service {self.name}: projection {cls.name!r} has no {needed} table; "
                                           f"add opsat.common.consumer.{helper}(metadata) to its tables")
        known = getattr(self.aggregate, "commands", None)
        if known is None:
            raise DescriptionError(f"service {self.name}: the aggregate names no `commands`")
        issued = [(f"route for {c.__name__}", c) for r in self.routers if isinstance(r, CommandRouter)
                  for c in r.command_classes]
        issued += [(f"reaction {r.name!r}", r.command) for r in self.reactions if issubclass(r, CommandReaction)]
        issued += [(f"deadline {kind!r}", c) for kind, c in self.deadlines.items()]
        for where, command in issued:
            if command not in known:
                raise DescriptionError(f"service {self.name}: {where} issues {command.__name__}, "
                                       "which has no rule in the aggregate")

    def consumer_classes(self) -> list[type]:
        return [*self.projections, *self.reactions]

    # --- pieces built from settings ---------------------------------------------------------------------
    def registry(self) -> EventRegistry:
        return EventRegistry(self.name, self.events)

    def topic(self, settings: ServiceSettings) -> str:
        return settings.topic(self.name)

    def consumer(self, settings: ServiceSettings, name: str) -> Projection:
        classes = {c.name: c for c in self.consumer_classes()}
        if name not in classes:
            raise DescriptionError(f"service {self.name} has no consumer {name!r}; it has {', '.join(classes)}")
        cls = classes[name]
        return cls(*(settings.topic(source) for source in cls.sources))

    def dlq_topic(self, settings: ServiceSettings, consumer: str) -> str:
        return f"{settings.topic_namespace}.{self.name}.{consumer}.dlq"

    def runner_config(self, settings: ServiceSettings, consumer: str, **extra: Any) -> RunnerConfig:
        reads = next((getattr(c, "reads", ()) for c in self.consumer_classes() if c.name == consumer), ())
        return RunnerConfig(bootstrap=settings.kafka_bootstrap, group_id=f"{settings.topic_namespace}.{self.name}."
                            f"{consumer}", dlq_topic=self.dlq_topic(settings, consumer),
                            max_retries=settings.consumer_max_retries, max_records=settings.consumer_max_records,
                            commit_interval_s=settings.consumer_commit_interval_s,
                            fetch_min_bytes=settings.consumer_fetch_min_bytes,
                            fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
                            idle_fetch_max_wait_ms=settings.consumer_idle_fetch_max_wait_ms,
                            session_timeout_ms=settings.kafka_session_timeout_ms,
                            metadata_max_age_ms=settings.kafka_metadata_max_age_ms,
                            group_instance_id=settings.kafka_group_instance_id, rebuild_lanes=settings.rebuild_lanes,
                            registries=(self.registry(), *([ForeignReaders(reads)] if reads else [])), **extra)

    def command_handler(self, settings: ServiceSettings, store: StreamStore,
                        clock: Callable[[], datetime] = utcnow) -> CommandHandler:
        return CommandHandler(self.name, store, self.aggregate(settings), clock)

    def topics(self, settings: ServiceSettings) -> dict[str, int]:
        """{topic: partitions} the worker creates: the events topic (explicit partition count, not the broker's
        default) and each consumer's dead-letter topic."""
        return {self.topic(settings): self.partitions,
                **{self.dlq_topic(settings, c.name): 1 for c in self.consumer_classes()}}

    async def ensure_topics(self, settings: ServiceSettings) -> None:
        await ensure_topics(settings.kafka_bootstrap, self.topics(settings),
                            replication=settings.kafka_replication_factor)

    def create_app(self, settings: ServiceSettings | None = None, *,
                   clock: Callable[[], datetime] = utcnow) -> FastAPI:
        settings = settings or self.settings()

        async def wire(app: FastAPI) -> None:
            app.state.commands = self.command_handler(settings, app.state.store, clock)
            if self.queries is not None:
                app.state.queries = self.queries(app.state.engine)

        return create_service_app(settings=settings, title=f"opsat {self.name}", description=self.description,
                                  registry=self.registry(), routers=self.routers, on_startup=wire)

    def build_loops(self, settings: ServiceSettings, *,
                    clock: Callable[[], datetime] = utcnow) -> list[tuple[str, Loop]]:
        """The worker's loops, each `async (stop) -> ...`; tests run them in-process the same way."""
        engine = create_engine(settings.database_url, pool_size=settings.database_pool_size,
                               pool_timeout_s=settings.database_pool_timeout_s, pool_name="worker")
        handler = self.command_handler(settings, EventStore(engine, self.registry(), settings.idempotency_retention_s,
                                                            group_commit=settings.event_store_group_commit), clock)
        relay = OutboxRelay(RelayConfig(database_url=settings.database_url, bootstrap=settings.kafka_bootstrap,
                                        topic=self.topic(settings), source=self.registry().source,
                                        batch_size=settings.relay_batch_size,
                                        poll_interval_s=settings.relay_poll_interval_s,
                                        request_timeout_ms=settings.kafka_request_timeout_ms,
                                        delivery_timeout_s=settings.relay_delivery_timeout_s,
                                        linger_s=settings.relay_linger_s))
        loops: list[tuple[str, Loop]] = [("relay", relay.run), ("group-lag", lambda stop: run_group_lag(
            self, settings, stop, settings.group_lag_interval_s)), ("idempotency-cleanup", lambda stop: (
            run_idempotency_cleanup(engine, settings.idempotency_retention_s, stop)))]
        for kind, classes in (("projection", self.projections), ("reaction", self.reactions)):
            for cls in classes:
                consumer = self.consumer(settings, cls.name)
                if isinstance(consumer, CommandReaction):
                    consumer.handler = handler
                runner = ProjectionRunner(engine, consumer, self.runner_config(settings, cls.name))
                loops.append((f"{kind}:{cls.name}", runner.run))
        for name, factory in self.loops.items():
            loops.append((name, factory(settings, engine, handler).run))
        if self.deadlines:
            handlers: dict[str, deadline_table.DeadlineHandler] = {
                kind: deadline_table.CommandDeadline(handler, kind, command) for kind, command in self.deadlines.items()}
            loops.append(("deadlines", lambda stop: deadline_table.run_scheduler(
                engine, handlers, stop, settings.deadline_poll_interval_s, clock=clock)))
        return loops

    # --- the command line --------------------------------------------------------------------------------
    def main(self, argv: Sequence[str] | None = None) -> None:
        from opsat.common import cli

        cli.run(self, argv)

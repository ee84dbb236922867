"""The intake worker: outbox relay, the requests projection, the auto-close scheduler and its deadlines."""

from __future__ import annotations

from opsat.common import deadlines
from opsat.common.consumer import ProjectionRunner, RunnerConfig
from opsat.common.db import create_engine
from opsat.common.domain import SYSTEM_ACTOR
from opsat.common.eventstore import EventStore
from opsat.common.kafka import ensure_topics
from opsat.common.outbox import OutboxRelay, RelayConfig
from opsat.common.worker import Loop
from opsat.intake.app.handlers import IntakeHandlers, PolicyBook
from opsat.intake.app.policies import AUTO_CLOSE, AutoCloseScheduler
from opsat.intake.domain.commands import AutoCloseRequest
from opsat.intake.main import registry
from opsat.intake.projections.requests import RequestsProjection
from opsat.intake.settings import IntakeSettings

TOPIC_PARTITIONS = 6


def dlq_topic(settings: IntakeSettings, projection: str) -> str:
    return f"{settings.topic_namespace}.intake.{projection}.dlq"


def runner_config(settings: IntakeSettings, projection: str, **extra: object) -> RunnerConfig:
    return RunnerConfig(bootstrap=settings.kafka_bootstrap, group_id=f"{settings.topic_namespace}.intake.{projection}",
                        dlq_topic=dlq_topic(settings, projection), max_retries=settings.consumer_max_retries,
                        session_timeout_ms=settings.kafka_session_timeout_ms,
                        registries=(registry(),), **extra)  # type: ignore[arg-type]


async def ensure_intake_topics(settings: IntakeSettings) -> None:
    """Create the topic (explicit partition count, not the broker's default) and the dead-letter topics."""
    await ensure_topics(settings.kafka_bootstrap, {
        settings.topic("intake"): TOPIC_PARTITIONS,
        dlq_topic(settings, RequestsProjection.name): 1,
        dlq_topic(settings, AutoCloseScheduler.name): 1,
    }, replication=settings.kafka_replication_factor)


def build_loops(settings: IntakeSettings) -> list[tuple[str, Loop]]:
    """The worker's loops, each `async (stop) -> ...`; tests run them in-process the same way."""
    engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
    topic = settings.topic("intake")
    handlers = IntakeHandlers(EventStore(engine, registry()),
                              PolicyBook(settings.intake_policy, settings.intake_policy_by_org))
    relay = OutboxRelay(RelayConfig(database_url=settings.database_url, bootstrap=settings.kafka_bootstrap, topic=topic,
                                    source=registry().source, batch_size=settings.relay_batch_size,
                                    poll_interval_s=settings.relay_poll_interval_s,
                                    request_timeout_ms=settings.kafka_request_timeout_ms))
    requests = RequestsProjection(topic)
    scheduler = AutoCloseScheduler(topic)

    async def auto_close(request_id: str, _payload: dict) -> None:
        await handlers.execute(AutoCloseRequest(request_id), SYSTEM_ACTOR, correlation_id=f"deadline:{request_id}")

    return [
        ("relay", relay.run),
        ("projection:requests", ProjectionRunner(engine, requests, runner_config(settings, requests.name)).run),
        ("policy:auto_close", ProjectionRunner(engine, scheduler, runner_config(settings, scheduler.name)).run),
        ("deadlines", lambda stop: deadlines.run_scheduler(engine, {AUTO_CLOSE: auto_close}, stop,
                                                           settings.deadline_poll_interval_s)),
    ]

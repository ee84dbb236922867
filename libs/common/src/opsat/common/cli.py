"""`opsat-<service> api | worker | migrate | rebuild | redrive | asyncapi`, built from a service description."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from opsat.common.observability import configure_logging

if TYPE_CHECKING:
    from opsat.common.service import Service
    from opsat.common.settings import ServiceSettings

log = logging.getLogger(__name__)


def run(service: Service, argv: Sequence[str] | None = None) -> None:
    consumers = [c.name for c in service.consumer_classes()]
    projections = [c.name for c in service.projections]
    parser = argparse.ArgumentParser(prog=f"opsat-{service.name}", description=f"opsat {service.name} service")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("api", help="serve the HTTP API")
    sub.add_parser("worker", help="run the outbox relay, projections, reactions and deadlines")
    sub.add_parser("migrate", help="apply database migrations and exit")
    sub.add_parser("asyncapi", help="print the AsyncAPI document of the events this service publishes (JSON)")
    rebuild = sub.add_parser("rebuild", help="replay the topics into a fresh read-model schema")
    rebuild.add_argument("projection", nargs="?", choices=projections, default=projections[0] if projections else None)
    rebuild.add_argument("--schema", default="read_model_rebuild")
    redrive = sub.add_parser("redrive", help="apply the events parked on a consumer's dead-letter topic again")
    redrive.add_argument("consumer", choices=consumers)
    args = parser.parse_args(argv)
    settings = service.settings()
    if args.command == "asyncapi":
        from opsat.common.api import dump_json

        print(dump_json(service.registry().asyncapi(service.topic(settings))))
        return
    configure_logging(service.name, settings.log_level, settings.log_json)
    if args.command == "migrate":
        migrate(service, settings)
    elif args.command == "api":
        api(service, settings)
    elif args.command == "worker":
        asyncio.run(worker(service, settings))
    elif args.command == "rebuild":
        asyncio.run(_rebuild(service, settings, args.projection, args.schema))
    elif args.command == "redrive":
        asyncio.run(_redrive(service, settings, args.consumer))


def migrate(service: Service, settings: ServiceSettings) -> None:
    from opsat.common.migrations import upgrade

    if upgrade(settings.database_url, service.migrations):
        log.info("%s database migrated", service.name)
    else:
        log.info("%s database already at the latest revision", service.name)


def usable_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """Cores this process may keep busy: the cgroup v2 CPU quota (a container's limit) rounded up, else the
    cores it may be scheduled on."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))


def api(service: Service, settings: ServiceSettings) -> None:
    log.info("%s API listening on http://%s:%d (docs at /docs)", service.name, settings.http_host, settings.http_port)
    # Several processes need an import string; each builds its app from the same environment.
    workers = settings.http_workers or usable_cores()
    many = workers > 1
    app = f"{service.module}:create_app" if many else service.create_app(settings)
    uvicorn.run(app, factory=many, workers=workers, host=settings.http_host, port=settings.http_port,
                log_config=None, access_log=False, proxy_headers=True,
                timeout_keep_alive=settings.http_keepalive_timeout_s)


async def worker(service: Service, settings: ServiceSettings) -> None:
    from opsat.common.worker import serve_worker

    async def wait_for_kafka(stop: asyncio.Event) -> None:
        delay = 1.0
        while not stop.is_set():  # the broker may start after us (compose, Kubernetes)
            try:
                await service.ensure_topics(settings)
                return
            except Exception as exc:
                log.warning("Kafka not ready (%s); retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15)

    await serve_worker(settings, service.build_loops(settings), prepare=wait_for_kafka)


async def _rebuild(service: Service, settings: ServiceSettings, name: str, schema: str) -> None:
    from opsat.common.db import create_engine
    from opsat.common.projections import rebuild

    engine = create_engine(settings.database_url)
    stats = await rebuild(engine, service.consumer(settings, name), service.runner_config(settings, name), schema)
    await engine.dispose()
    log.info("rebuilt %s into schema %s: %d events applied", name, schema, stats.applied)


async def _redrive(service: Service, settings: ServiceSettings, name: str) -> None:
    from opsat.common.consumer import redrive
    from opsat.common.db import create_engine
    from opsat.common.eventstore import EventStore
    from opsat.common.reactions import CommandReaction

    engine = create_engine(settings.database_url)
    consumer = service.consumer(settings, name)
    if isinstance(consumer, CommandReaction):
        consumer.handler = service.command_handler(settings, EventStore(engine, service.registry()))
    done = await redrive(engine, consumer, service.runner_config(settings, name))
    await engine.dispose()
    log.info("re-drove %d parked events of %s (those still failing are parked again)", done, name)

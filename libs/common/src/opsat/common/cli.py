"""`opsat-<service> api | worker | migrate | rebuild | redrive | asyncapi`, built from a service description."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import sys
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
    rebuild = sub.add_parser("rebuild", help="replay the topics into a fresh read-model schema; with --swap, "
                             "online: rebuild every projection, pause, catch up, swap, resume")
    rebuild.add_argument("projection", nargs="?", choices=projections, default=projections[0] if projections else None)
    rebuild.add_argument("--schema", default="read_model_rebuild")
    rebuild.add_argument("--swap", action="store_true", help="make the rebuilt read model the live one, losing "
                         "no event applied meanwhile (the old one is kept as read_model_old_<time>)")
    redrive = sub.add_parser("redrive", help="apply the events parked on a consumer's dead-letter topic again")
    redrive.add_argument("consumer", choices=consumers)
    ops = sub.add_parser("events", help="print a stream's events from the event store, in order")
    ops.add_argument("stream_id")
    tail = sub.add_parser("tail", help="print the events arriving on this service's topic (or a dead-letter topic)")
    tail.add_argument("--dlq", choices=consumers, help="the dead-letter topic of this consumer instead")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--limit", type=int)
    tail.add_argument("--idle-exit", type=float, help="stop after this many seconds without a new record")
    sub.add_parser("lag", help="consumer lag per consumer and partition, and the relay's outbox backlog")
    token = sub.add_parser("token", help="mint a development token (dev auth mode only)")
    token.add_argument("--sub", required=True)
    token.add_argument("--org", required=True)
    token.add_argument("--roles", default="requester")
    token.add_argument("--ttl", type=int, default=3600, help="seconds")
    args = parser.parse_args(argv)
    settings = service.settings()
    if args.command == "asyncapi":
        from opsat.common.api import dump_json

        print(dump_json(service.registry().asyncapi(service.topic(settings))))
        return
    if args.command in OPERATOR_VERBS:
        asyncio.run(OPERATOR_VERBS[args.command](service, settings, args))
        return
    configure_logging(service.name, settings.log_level, settings.log_json)
    if args.command == "migrate":
        migrate(service, settings)
    elif args.command == "api":
        api(service, settings)
    elif args.command == "worker":
        asyncio.run(worker(service, settings))
    elif args.command == "rebuild" and args.swap:
        asyncio.run(_rebuild_and_swap(service, settings, args.schema))
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
                timeout_keep_alive=settings.http_keepalive_timeout_s,
                # uvicorn's 5 s ping killed children whose imports took longer on a busy 2-core machine, over
                # and over; a hung child is still replaced, after a minute.
                timeout_worker_healthcheck=60)


async def worker(service: Service, settings: ServiceSettings) -> None:
    from opsat.common import tracing
    from opsat.common.worker import serve_worker

    tracing.configure(settings, service.name)

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


async def _rebuild_and_swap(service: Service, settings: ServiceSettings, schema: str) -> None:
    from opsat.common.db import create_engine
    from opsat.common.projections import rebuild_and_swap

    engine = create_engine(settings.database_url)
    try:
        projections = [(service.consumer(settings, c.name), service.runner_config(settings, c.name))
                       for c in service.projections]
        await rebuild_and_swap(engine, projections, schema, progress=lambda line: print(line, file=sys.stderr,
                                                                                         flush=True))
    finally:
        await engine.dispose()


# --- operator's verbs: read-only views and a development token, printed for people --------------------------

async def _events(service: Service, settings: ServiceSettings, args: argparse.Namespace) -> None:
    from opsat.common.db import connect_raw

    conn = await connect_raw(settings.database_url)
    try:
        rows = await conn.fetch("select position, version, event_type, schema_version, data::text, metadata::text,"
                                " recorded_at from events where stream_id = $1 order by version", args.stream_id)
    finally:
        await conn.close()
    if not rows:
        raise SystemExit(f"opsat-{service.name}: no stream {args.stream_id!r}")
    for r in rows:
        print(json.dumps({"version": r["version"], "position": r["position"],
                          "type": f"{r['event_type']}.v{r['schema_version']}",
                          "recorded_at": r["recorded_at"].isoformat(), "data": json.loads(r["data"]),
                          "metadata": json.loads(r["metadata"])}, ensure_ascii=False))


async def _tail(service: Service, settings: ServiceSettings, args: argparse.Namespace) -> None:
    from opsat.common.tail import tail

    topic = service.dlq_topic(settings, args.dlq) if args.dlq else service.topic(settings)
    await tail(settings.kafka_bootstrap, topic, from_beginning=args.from_beginning, limit=args.limit,
               idle_exit_s=args.idle_exit, pretty=False)


async def _lag(service: Service, settings: ServiceSettings, args: argparse.Namespace) -> None:
    from opsat.common import grouplag
    from opsat.common.db import connect_raw

    conn = await connect_raw(settings.database_url)
    try:
        backlog = await conn.fetchval("select count(*) from outbox")
        oldest = await conn.fetchval("select min(e.recorded_at) from outbox o join events e using (position)")
    finally:
        await conn.close()
    print(f"outbox backlog {service.topic(settings)}: {backlog} events"
          + (f", oldest recorded {oldest.isoformat()}" if oldest else ""))
    by_consumer: dict[str, list[grouplag.PartitionLag]] = {}
    for p in await grouplag.group_lags(service, settings):
        by_consumer.setdefault(p.consumer, []).append(p)
    for name, parts in by_consumer.items():
        for p in parts:
            print(f"  {name} {p.partition.topic}[{p.partition.partition}]: committed {p.committed}, end {p.end}, "
                  f"lag {p.end - p.committed}")
        print(f"consumer {name} (group {parts[0].group}): lag {sum(p.end - p.committed for p in parts)}")


async def _token(service: Service, settings: ServiceSettings, args: argparse.Namespace) -> None:
    from opsat.common.auth import mint_token

    try:
        print(mint_token(settings, sub=args.sub, org=args.org, roles=args.roles.split(","), ttl_s=args.ttl))
    except RuntimeError as exc:
        raise SystemExit(f"opsat-{service.name}: {exc}") from None


OPERATOR_VERBS = {"events": _events, "tail": _tail, "lag": _lag, "token": _token}

"""`opsat-intake api | worker | migrate | rebuild`: the process entry points (containers run these)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import uvicorn

from opsat.common.observability import configure_logging
from opsat.intake.settings import IntakeSettings

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("opsat.intake")


def migrate(settings: IntakeSettings) -> None:
    from opsat.common.migrations import upgrade

    upgrade(settings.database_url, MIGRATIONS)
    log.info("intake database migrated")


def api(settings: IntakeSettings) -> None:
    from opsat.intake.main import create_app

    log.info("intake API listening on http://%s:%d (docs at /docs)", settings.http_host, settings.http_port)
    # Several processes need an import string; each builds its app from the same environment.
    app = "opsat.intake.main:create_app" if settings.http_workers > 1 else create_app(settings)
    uvicorn.run(app, factory=settings.http_workers > 1, workers=settings.http_workers, host=settings.http_host,
                port=settings.http_port, log_config=None, access_log=False, proxy_headers=True)


async def _worker(settings: IntakeSettings) -> None:
    from opsat.common.worker import serve_worker
    from opsat.intake.worker import build_loops, ensure_intake_topics

    async def wait_for_kafka(stop: asyncio.Event) -> None:
        delay = 1.0
        while not stop.is_set():  # the broker may start after us (compose, Kubernetes)
            try:
                await ensure_intake_topics(settings)
                return
            except Exception as exc:
                log.warning("Kafka not ready (%s); retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15)

    await serve_worker(settings, build_loops(settings), prepare=wait_for_kafka)


async def _rebuild(settings: IntakeSettings, schema: str) -> None:
    from opsat.common.db import create_engine
    from opsat.common.projections import rebuild
    from opsat.intake.projections.requests import RequestsProjection
    from opsat.intake.worker import runner_config

    engine = create_engine(settings.database_url)
    projection = RequestsProjection(settings.topic("intake"))
    stats = await rebuild(engine, projection, runner_config(settings, projection.name), schema)
    await engine.dispose()
    log.info("rebuilt %s into schema %s: %d events applied", projection.name, schema, stats.applied)


async def _redrive(settings: IntakeSettings, projection_name: str) -> None:
    from opsat.common.consumer import redrive
    from opsat.common.db import create_engine
    from opsat.intake.app.policies import AutoCloseScheduler
    from opsat.intake.projections.requests import RequestsProjection
    from opsat.intake.worker import runner_config

    projections = {p.name: p for p in (RequestsProjection(settings.topic("intake")),
                                       AutoCloseScheduler(settings.topic("intake")))}
    engine = create_engine(settings.database_url)
    done = await redrive(engine, projections[projection_name], runner_config(settings, projection_name))
    await engine.dispose()
    log.info("re-drove %d parked events of %s (those still failing are parked again)", done, projection_name)


def main() -> None:
    parser = argparse.ArgumentParser(prog="opsat-intake", description="opsat intake service")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("api", help="serve the HTTP API")
    sub.add_parser("worker", help="run the outbox relay, projections and deadlines")
    sub.add_parser("migrate", help="apply database migrations and exit")
    sub.add_parser("asyncapi", help="print the AsyncAPI document of intake's events (JSON)")
    rebuild_cmd = sub.add_parser("rebuild", help="replay the topic into a fresh read-model schema")
    rebuild_cmd.add_argument("--schema", default="read_model_rebuild")
    redrive_cmd = sub.add_parser("redrive", help="apply the events parked on a projection's dead-letter topic again")
    redrive_cmd.add_argument("projection", choices=["requests", "auto_close_scheduler"])
    args = parser.parse_args()
    settings = IntakeSettings()
    if args.command == "asyncapi":
        from opsat.common.api import dump_json
        from opsat.intake.main import registry

        print(dump_json(registry().asyncapi(settings.topic("intake"))))
        return
    configure_logging("intake", settings.log_level, settings.log_json)
    if args.command == "migrate":
        migrate(settings)
    elif args.command == "api":
        api(settings)
    elif args.command == "worker":
        asyncio.run(_worker(settings))
    elif args.command == "rebuild":
        asyncio.run(_rebuild(settings, args.schema))
    elif args.command == "redrive":
        asyncio.run(_redrive(settings, args.projection))


if __name__ == "__main__":
    main()

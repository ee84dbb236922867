"""Rebuilding a projection from its topics into a fresh schema, comparing, and swapping it in.

The rebuild reads every partition from the beginning (no consumer group) up to the end offsets seen
when it started, into `schema`, and builds the indexes only queries use (`QUERY_ONLY`) once the rows are in;
the live schema keeps serving meanwhile. `swap` renames both schemas
in one transaction, so readers see either the old or the new read model, never a mix; `rebuild_and_swap`
does all of it online, catching up with what the live projections applied meanwhile.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import queue
import signal
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from opsat.common.collector import fewer_collections
from opsat.common.consumer import (
    Projection,
    ProjectionRunner,
    RunnerConfig,
    RunnerStats,
    create_read_model,
    finish_load,
    load_gate,
    read_model_engine,
)
from opsat.common.db import READ_MODEL_LOCK, READ_MODEL_SCHEMA, create_engine, lean_timestamps


async def rebuild(engine: AsyncEngine, projection: Projection, config: RunnerConfig, schema: str) -> RunnerStats:
    if schema == READ_MODEL_SCHEMA:
        raise ValueError("rebuild into a fresh schema, not the live one")
    async with engine.begin() as conn:
        await conn.execute(text(f'drop schema if exists "{schema}" cascade'))
    await create_read_model(engine, projection, schema, for_load=True)
    stats = await _lanes(engine, projection, replace(config, schema=schema, until_end=True, loading=True)).run()
    await _after_load(engine, projection, schema)
    return stats


async def _after_load(engine: AsyncEngine, projection: Projection, schema: str) -> None:
    """A load is done: the tables the projection derives (`after_load`), then their `finish_load` (keys, query-only
    indexes, autovacuum back, statistics); the other tables' `finish_load` meanwhile, on connections of their own.
    A projection with an `after_load` that marks no table `DERIVED` has all its tables finished after it."""
    tables = projection.metadata.sorted_tables
    after_load = getattr(projection, "after_load", None)
    derived = [table for table in tables if table.info.get("opsat.derived")] or (tables if after_load else [])
    gate = load_gate(engine)  # after_load's connection and the tables' share it

    async def derive() -> None:
        if after_load is not None:
            async with gate, read_model_engine(engine, schema).begin() as conn:
                await after_load(conn)
        await finish_load(engine, projection, schema, tables=derived, gate=gate)

    async with asyncio.TaskGroup() as group:
        group.create_task(derive())
        group.create_task(finish_load(engine, projection, schema, tables=[t for t in tables if t not in derived],
                                      gate=gate))


async def swap(engine: AsyncEngine, rebuilt: str) -> str:
    """Make `rebuilt` the live read model; returns the name the old one was kept under. Events applied live
    since `rebuilt` was built are not in it: `rebuild_and_swap` catches up before swapping."""
    async with engine.begin() as conn:
        return await _rename(conn, rebuilt)


async def snapshot(engine: AsyncEngine, projection: Projection, schema: str = READ_MODEL_SCHEMA,
                   exclude: tuple[str, ...] = ("processed_events",)) -> dict[str, list[dict[str, Any]]]:
    """Every table of a projection as sorted rows: two read models are equal when their snapshots are."""
    out: dict[str, list[dict[str, Any]]] = {}
    async with read_model_engine(engine, schema).connect() as conn:
        for table in projection.metadata.sorted_tables:
            if table.name in exclude:
                continue
            rows = [dict(r) for r in (await conn.execute(select(table))).mappings()]
            out[table.name] = sorted(rows, key=lambda r: [str(r[c.name]) for c in table.primary_key.columns])
    return out


Progress = Callable[[str], None]


@dataclass
class SwapReport:
    retired: str  # the name the old read model is kept under
    applied: dict[str, int] = field(default_factory=dict)  # per projection: rebuild + catch-ups
    caught_up_paused: int = 0  # events applied while the live projections were paused


async def rebuild_and_swap(engine: AsyncEngine, projections: Sequence[tuple[Projection, RunnerConfig]],
                           schema: str = "read_model_rebuild", *, progress: Progress = print,
                           close_enough: int = 500, max_catch_ups: int = 5) -> SwapReport:
    """Rebuild every projection of the read model into `schema` while the live one keeps serving, then swap
    it in without losing an event: catch up while live (until fewer than `close_enough` remain), pause the
    live projections (the exclusive read-model lock: their next batch waits), catch up to the topics' ends,
    rename the schemas, resume. A live batch that waited then writes into the new schema, where the events
    it carries are already applied and are skipped as duplicates (the processed ids moved with the schema)."""
    if schema == READ_MODEL_SCHEMA:
        raise ValueError("rebuild into a fresh schema, not the live one")
    async with engine.begin() as conn:
        await conn.execute(text(f'drop schema if exists "{schema}" cascade'))
    for projection, _ in projections:
        await create_read_model(engine, projection, schema, for_load=True)
    report = SwapReport(retired="")
    offsets: dict[str, dict[Any, int] | None] = {p.name: None for p, _ in projections}

    async def replay(phase: str) -> int:
        remaining = 0
        for projection, config in projections:
            stats, left = await _replay(engine, projection, replace(config, loading=phase == "rebuild"), schema,
                                        offsets[projection.name], phase, progress)
            offsets[projection.name] = stats.offsets
            report.applied[projection.name] = report.applied.get(projection.name, 0) + stats.applied
            remaining += left
        return remaining

    with fewer_collections():  # held over the whole rebuild, not taken and given back per projection
        await replay("rebuild")
    for projection, _ in projections:  # before the catch-ups: they apply as live batches do
        progress(f"after the load of {projection.name}: its derived tables, keys, query-only indexes and statistics")
        await _after_load(engine, projection, schema)
    for _ in range(max_catch_ups):  # while live: each pass reads what arrived during the previous one
        if await replay("catch-up") < close_enough:
            break
    progress("pausing the live projections")
    async with engine.connect() as conn, conn.begin():
        await conn.execute(text("select pg_advisory_xact_lock(:key)"), {"key": READ_MODEL_LOCK})
        before = sum(report.applied.values())
        await replay("paused catch-up")
        report.caught_up_paused = sum(report.applied.values()) - before
        report.retired = await _rename(conn, schema)
    progress(f"swapped: {schema} is the live read model, the old one kept as {report.retired}; projections resume")
    return report


async def _replay(engine: AsyncEngine, projection: Projection, config: RunnerConfig, schema: str,
                  start: dict[Any, int] | None, phase: str, progress: Progress) -> tuple[RunnerStats, int]:
    """One pass from `start` (None: the beginning) to the end offsets seen when it starts, reporting progress
    every second; returns the stats and how many records the pass read."""
    lanes = _lanes(engine, projection, replace(config, schema=schema, until_end=True, start_offsets=start))
    first = sum((start or {}).values())

    def report() -> str:
        total = sum(lanes.end_offsets.values()) - first
        offsets = lanes.offsets
        done = sum(offsets.values()) - first if offsets else 0
        return f"{phase} {projection.name}: {max(done, 0)}/{max(total, 0)} events"

    task = asyncio.create_task(lanes.run())
    while not task.done():
        await asyncio.wait({task}, timeout=1.0)
        if not task.done():
            progress(report())
    stats = task.result()
    progress(report() + f" ({stats.applied} applied)")
    return stats, max(sum(lanes.end_offsets.values()) - first, 0)


def _lanes(engine: AsyncEngine, projection: Projection, config: RunnerConfig) -> _Lanes | _LaneProcesses:
    """One replay of a projection up to the topics' ends: by one runner, or for a `stream_local` projection by
    `config.rebuild_lanes` runners at once over disjoint shares of the partitions (their rows are disjoint too); in a
    load, each in a process of its own (`config.rebuild_lane_processes`) where the platform forks."""
    lanes = max(config.rebuild_lanes, 1) if getattr(projection, "stream_local", False) else 1
    configs = [replace(config, lane=(i, lanes) if lanes > 1 else None) for i in range(lanes)]
    if lanes > 1 and config.loading and config.rebuild_lane_processes and "fork" in mp.get_all_start_methods():
        return _LaneProcesses(engine, projection, configs)
    return _Lanes(engine, projection, configs)


class _Lanes:
    """Runners in this process; their counts and offsets add up; one lane failing stops the others."""

    def __init__(self, engine: AsyncEngine, projection: Projection, configs: list[RunnerConfig]) -> None:
        self.runners = [ProjectionRunner(engine, projection, config) for config in configs]

    @property
    def end_offsets(self) -> dict[Any, int]:
        return {tp: end for runner in self.runners for tp, end in runner.end_offsets.items()}

    @property
    def offsets(self) -> dict[Any, int]:
        return {tp: offset for runner in self.runners for tp, offset in runner.stats.offsets.items()}

    async def run(self) -> RunnerStats:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(runner.run(asyncio.Event())) for runner in self.runners]
        return _sum([task.result() for task in tasks])


def _sum(lanes: list[RunnerStats]) -> RunnerStats:
    total = RunnerStats()
    for stats in lanes:
        total.applied += stats.applied
        total.duplicates += stats.duplicates
        total.ignored += stats.ignored
        total.parked += stats.parked
        total.retries += stats.retries
        total.offsets.update(stats.offsets)
    return total


class LaneFailed(RuntimeError):
    """A lane's process failed (its error, as text: it was raised in another process) or died."""


class _LaneProcesses:
    """Each lane's runner in a process forked from this one, with an engine of its own: a forked process starts at
    once, with everything imported, where a fresh interpreter took a second to import the service. The lanes report
    their offsets every second and their stats at the end on a queue; one failing (or dying) stops the others."""

    def __init__(self, engine: AsyncEngine, projection: Projection, configs: list[RunnerConfig]) -> None:
        self.url = engine.url.render_as_string(hide_password=False)
        self.projection = projection
        self.configs = configs
        self._end_offsets: dict[int, dict[Any, int]] = {}
        self._offsets: dict[int, dict[Any, int]] = {}

    @property
    def end_offsets(self) -> dict[Any, int]:
        return {tp: end for lane in self._end_offsets.values() for tp, end in lane.items()}

    @property
    def offsets(self) -> dict[Any, int]:
        return {tp: offset for lane in self._offsets.values() for tp, offset in lane.items()}

    async def run(self) -> RunnerStats:
        context = mp.get_context("fork")
        reports = context.Queue()
        processes = [context.Process(target=_lane_process, args=(self.url, self.projection, config, i, reports),
                                     name=f"rebuild {self.projection.name} lane {i}", daemon=True)
                     for i, config in enumerate(self.configs)]
        try:
            for process in processes:
                process.start()
            done: dict[int, RunnerStats] = {}
            while len(done) < len(processes):
                report = await asyncio.to_thread(_next_report, reports)
                if report is not None:
                    self._take(report, done)
                for i, process in enumerate(processes):  # each time: the others' reports may never pause
                    if i not in done and not process.is_alive():
                        # Its last report, if it made one, is in the queue already (sent before it exited).
                        while i not in done and (report := _next_report(reports, 0)) is not None:
                            self._take(report, done)
                        if i not in done:
                            raise LaneFailed(f"rebuild lane {i} of {self.projection.name} exited with code "
                                             f"{process.exitcode} before its end")
            return _sum([done[i] for i in range(len(processes))])
        finally:
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                if process.pid is not None:
                    await asyncio.to_thread(process.join)
            reports.close()

    def _take(self, report: tuple[Any, ...], done: dict[int, RunnerStats]) -> None:
        kind, lane, *payload = report
        if kind == "offsets":
            self._end_offsets[lane], self._offsets[lane] = payload
        elif kind == "done":
            done[lane] = payload[0]
            self._offsets[lane] = payload[0].offsets
        else:
            raise LaneFailed(f"rebuild lane {lane} of {self.projection.name} failed: {payload[0]}")


def _next_report(reports: Any, timeout: float = 1.0) -> Any:
    try:
        return reports.get(timeout=timeout)
    except queue.Empty:
        return None


def _lane_process(url: str, projection: Projection, config: RunnerConfig, lane: int, reports: Any) -> None:
    """A lane's process: its runner to the topics' ends, its offsets reported every second, then its stats (or its
    error, as text). It stops if the rebuild's process dies."""
    parent = os.getppid()
    # Forked, it has the parent's signal set-up: an event loop's SIGTERM handler (which does nothing here) and its
    # wakeup socket, so a SIGTERM to the lane would be ignored and read by the parent's loop as its own.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    async def replay() -> RunnerStats:
        engine = lean_timestamps(create_engine(url, pool_size=2, pool_name="rebuild_lane"))
        runner = ProjectionRunner(engine, projection, config)
        try:
            task = asyncio.create_task(runner.run(asyncio.Event()))
            while not task.done():
                await asyncio.wait({task}, timeout=1.0)
                if os.getppid() != parent:  # the rebuild's process is gone (killed): no one waits for this lane
                    task.cancel()
                reports.put(("offsets", lane, dict(runner.end_offsets), dict(runner.stats.offsets)))
            return task.result()
        finally:
            await engine.dispose()

    try:
        reports.put(("done", lane, asyncio.run(replay())))
    except BaseException as exc:  # whatever it is, the rebuild's process raises it
        reports.put(("failed", lane, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        reports.close()
        reports.join_thread()  # delivered before the process exits


async def _rename(conn: AsyncConnection, rebuilt: str) -> str:
    retired = f"{READ_MODEL_SCHEMA}_old_{datetime.now(UTC):%Y%m%d%H%M%S}"
    await conn.execute(text(f'alter schema "{READ_MODEL_SCHEMA}" rename to "{retired}"'))
    await conn.execute(text(f'alter schema "{rebuilt}" rename to "{READ_MODEL_SCHEMA}"'))
    return retired

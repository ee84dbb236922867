"""A rebuild replays a `stream_local` projection in lanes, runners at once over disjoint shares of the partitions
(each in a process of its own, or all in the rebuild's), and builds the `QUERY_ONLY` indexes once the rows are in.
Over real Kafka and PostgreSQL: every record applied once; each transaction holds one lane's partitions and
transactions of both lanes overlap in time, while a projection that is not stream-local is replayed by one runner whose
transactions never overlap; the indexes absent while loading and there afterwards, as a live schema has them;
autovacuum off while loading, back and the statistics taken afterwards. A lane that fails, or whose process dies,
fails the rebuild and stops the other lane; lanes whose rebuild's process is killed stop."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, func, insert, text
from sqlalchemy.dialects.postgresql import ARRAY

from opsat.common.bulk import qualified_name
from opsat.common.consumer import (
    QUERY_ONLY,
    ReceivedEvent,
    RunnerConfig,
    create_read_model,
    processed_events_table,
    stream_versions_table,
)
from opsat.common.db import READ_MODEL_SCHEMA, create_engine
from opsat.common.projections import LaneFailed, rebuild
from opsat.common.testing.helpers import rows

from .test_consumer_pipelining import PARTITIONS, create_topic, produce

ROOT = Path(__file__).resolve().parents[3]


class Backends:
    """Writes each applied event with its partition, its transaction, when that transaction started and wrote (after
    a pause, so that transactions of lanes running at once overlap), the process that wrote it, and what its batch saw
    of the table (its indexes and storage options): all in the rows, since a lane may run in a process of its own.
    With `give_up_in` (a lane of two: its partitions p have p % 2 == give_up_in), that lane's first batch ends it: with
    an error the runner does not handle, or (`die`) by killing the lane's process."""

    name = "backends"

    def __init__(self, topic: str, stream_local: bool, give_up_in: int | None = None, die: bool = False,
                 pause: float = 0.02) -> None:
        self.topics = [topic]
        self.stream_local = stream_local
        self.give_up_in = give_up_in
        self.die = die
        self.pause = pause
        self.metadata = MetaData(schema=READ_MODEL_SCHEMA)
        processed_events_table(self.metadata)
        stream_versions_table(self.metadata)
        self.applied = Table("applied", self.metadata, Column("event_id", String, primary_key=True),
                             Column("partition", Integer, nullable=False), Column("tx", BigInteger, nullable=False),
                             Column("started", DateTime(timezone=True), nullable=False),
                             Column("wrote", DateTime(timezone=True), nullable=False),
                             Column("pid", Integer, nullable=False),
                             Column("indexes", ARRAY(String), nullable=False), Column("options", ARRAY(String)),
                             Index("applied_by_tx", "tx", "partition", info=QUERY_ONLY),
                             Index("applied_by_partition", "partition"))  # not query-only: there all along

    async def apply(self, conn: Any, event: ReceivedEvent) -> None:
        await self.apply_batch(conn, [event])

    async def apply_batch(self, conn: Any, events: list[ReceivedEvent]) -> None:
        if self.give_up_in is not None and any(e.partition % 2 == self.give_up_in for e in events):
            if self.die:
                os.kill(os.getpid(), signal.SIGKILL)  # as an out-of-memory kill would
            raise SystemExit("this lane gives up")  # no `except Exception` catches it: it ends the lane
        table = qualified_name(conn, self.applied)
        indexes = [row[0] for row in await conn.exec_driver_sql(
            f"select c.relname from pg_index i join pg_class c on c.oid = i.indexrelid"
            f" where i.indrelid = '{table}'::regclass order by 1")]
        options = await conn.scalar(text(f"select reloptions from pg_class where oid = '{table}'::regclass"))
        await asyncio.sleep(self.pause)
        await conn.execute(insert(self.applied).values(tx=func.txid_current(), started=func.now(),
                                                       wrote=func.clock_timestamp()),
                           [{"event_id": e.id, "partition": e.partition, "pid": os.getpid(), "indexes": indexes,
                             "options": options} for e in events])


async def _transactions(database_url: str, schema: str) -> list[Any]:
    return await rows(database_url, f"select tx, array_agg(distinct partition order by partition) as partitions,"
                                     f" min(started) as started, max(wrote) as wrote from {schema}.applied group by tx"
                                     " order by started")


def _overlapping(transactions: list[Any]) -> int:
    return sum(1 for a, b in zip(transactions, transactions[1:], strict=False) if b["started"] < a["wrote"])


def _config(kafka_bootstrap: str, namespace: str, processes: bool = True) -> RunnerConfig:
    return RunnerConfig(bootstrap=kafka_bootstrap, group_id=f"{namespace}.lanes", dlq_topic=f"{namespace}.lanes.dlq",
                        rebuild_max_records=50, rebuild_lanes=2, rebuild_lane_processes=processes, max_retries=0)


async def _six_hundred_records(bootstrap: str, namespace: str) -> str:
    topic = await create_topic(bootstrap, f"{namespace}.lanes")
    await produce(bootstrap, topic, 0, 600)
    return topic


@pytest.mark.parametrize("processes", [True, False], ids=["lane-processes", "in-process"])
async def test_a_stream_local_projection_is_rebuilt_in_two_lanes_each_record_once(
        kafka_bootstrap, database_url, topic_namespace, processes):
    topic = await _six_hundred_records(kafka_bootstrap, topic_namespace)
    engine = create_engine(database_url, pool_size=4)
    try:
        stats = await rebuild(engine, Backends(topic, stream_local=True),
                              _config(kafka_bootstrap, topic_namespace, processes), "rm_lanes")
        after = (await rows(database_url, "select c.reloptions, s.last_analyze from pg_class c join pg_stat_user_tables s"
                                          " on s.relid = c.oid where c.oid = 'rm_lanes.applied'::regclass"))[0]
        applied = await rows(database_url, "select event_id, pid, indexes, options from rm_lanes.applied")
        transactions = await _transactions(database_url, "rm_lanes")
        indexes = await rows(database_url, "select indexname from pg_indexes where schemaname = 'rm_lanes'"
                                           " and tablename = 'applied' order by 1")
        await create_read_model(engine, Backends(topic, stream_local=True))  # a live schema, for its indexes
        live = await rows(database_url, "select indexname, replace(indexdef, 'read_model.', 'rm_lanes.') as d"
                                        " from pg_indexes where schemaname = 'read_model' and tablename = 'applied'"
                                        " order by 1")
        rebuilt = await rows(database_url, "select indexname, indexdef as d from pg_indexes"
                                           " where schemaname = 'rm_lanes' and tablename = 'applied' order by 1")
    finally:
        await engine.dispose()
    assert stats.applied == 600 and len(applied) == len({r["event_id"] for r in applied}) == 600
    assert {tp.partition for tp in stats.offsets} == set(range(PARTITIONS))
    # lane i of 2 reads the partitions p with p % 2 == i: no transaction mixes them, and both lanes ran
    assert all(len({p % 2 for p in t["partitions"]}) == 1 for t in transactions), transactions
    assert {t["partitions"][0] % 2 for t in transactions} == {0, 1}, transactions
    assert _overlapping(transactions) > 0, "the two lanes' transactions never ran at once"
    # in two processes other than this one, or in this one
    pids = {r["pid"] for r in applied}
    assert (len(pids) == 2 and os.getpid() not in pids) if processes else pids == {os.getpid()}, pids
    # while loading, the query-only index was not there; afterwards it is, as a live schema has it
    assert all(r["indexes"] == ["applied_by_partition", "applied_pkey"] for r in applied), applied[:3]
    assert [r["indexname"] for r in indexes] == ["applied_by_partition", "applied_by_tx", "applied_pkey"]
    assert [dict(r) for r in rebuilt] == [dict(r) for r in live]
    # no autovacuum while loading; afterwards it is back, and the statistics were taken
    assert all(r["options"] == ["autovacuum_enabled=false"] for r in applied), applied[:3]
    assert after["reloptions"] is None and after["last_analyze"] is not None


@pytest.mark.parametrize("die", [False, True], ids=["lane-fails", "lane-process-dies"])
async def test_a_lane_process_that_fails_or_dies_fails_the_rebuild_and_stops_the_other(
        kafka_bootstrap, database_url, topic_namespace, die):
    """Lane 1 gives up at its first batch; lane 0, half a second a batch, had 6 batches to go. The rebuild's process
    stops on SIGTERM through its event loop (as the CLI and the bench do): terminating lane 0 must not set that off."""
    topic = await _six_hundred_records(kafka_bootstrap, topic_namespace)
    engine = create_engine(database_url, pool_size=4)
    signalled: list[int] = []
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, signalled.append, signal.SIGTERM)
    try:
        with pytest.raises(LaneFailed, match="exited with code -9" if die else "SystemExit: this lane gives up"):
            await rebuild(engine, Backends(topic, stream_local=True, give_up_in=1, die=die, pause=0.5),
                          _config(kafka_bootstrap, topic_namespace), "rm_lanes_fail")
        written = await rows(database_url, "select count(*) as n from rm_lanes_fail.applied")
        await asyncio.sleep(0.2)  # (a signal byte written to the loop's wakeup socket is read on its next turns)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await engine.dispose()
    assert mp.active_children() == []  # both reaped
    assert written[0]["n"] < 300, written  # the other lane was stopped before its end
    assert signalled == []  # the lane's SIGTERM was its own, not its parent's


async def test_a_projection_that_is_not_stream_local_is_rebuilt_by_one_runner(
        kafka_bootstrap, database_url, topic_namespace):
    topic = await create_topic(kafka_bootstrap, f"{topic_namespace}.onelane")
    await produce(kafka_bootstrap, topic, 0, 200)
    engine = create_engine(database_url, pool_size=4)
    try:
        stats = await rebuild(engine, Backends(topic, stream_local=False), _config(kafka_bootstrap, topic_namespace),
                              "rm_onelane")
        applied = await rows(database_url, "select event_id from rm_onelane.applied")
        transactions = await _transactions(database_url, "rm_onelane")
    finally:
        await engine.dispose()
    assert stats.applied == 200 and len(applied) == 200
    assert len(transactions) > 1 and _overlapping(transactions) == 0, transactions


async def test_lanes_stop_when_the_rebuilds_process_is_killed(kafka_bootstrap, database_url, topic_namespace):
    """The rebuild's process killed outright (none of its cleanup runs): its lane processes, a second a batch with 6
    batches each, notice within a second and stop, well before their end."""
    topic = await _six_hundred_records(kafka_bootstrap, topic_namespace)
    code = ("import asyncio\n"
            "from tests.integration.common.test_rebuild_lanes import Backends, _config\n"
            "from opsat.common.db import create_engine\n"
            "from opsat.common.projections import rebuild\n"
            f"asyncio.run(rebuild(create_engine({database_url!r}), Backends({topic!r}, stream_local=True, pause=1.0),"
            f" _config({kafka_bootstrap!r}, {topic_namespace!r}), 'rm_lanes_orphaned'))\n")
    rebuild_process = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=str(ROOT))
    try:
        lanes: set[int] = set()
        for _ in range(300):  # the first rows of both lanes
            try:
                lanes = {r["pid"] for r in await rows(database_url, "select distinct pid from rm_lanes_orphaned.applied")}
            except asyncpg.UndefinedTableError:
                pass
            if len(lanes) == 2:
                break
            await asyncio.sleep(0.1)
        assert len(lanes) == 2, lanes
    finally:
        rebuild_process.kill()
        await rebuild_process.wait()
    killed = time.monotonic()
    while any(_running(pid) for pid in lanes) and time.monotonic() - killed < 10:
        await asyncio.sleep(0.1)
    assert not any(_running(pid) for pid in lanes), "the lanes went on without their rebuild"
    assert time.monotonic() - killed < 4  # not at their end, 6 s on
    assert (await rows(database_url, "select count(*) as n from rm_lanes_orphaned.applied"))[0]["n"] < 600


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False

"""Read-your-writes waits (`min_version`) against the real stores.

A wait is woken by the projection's NOTIFY on the one LISTEN connection of the API process, instead of
reading the read model every few milliseconds; the waits are bounded per caller (over the cap a read answers
at once, marked stale).
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event

from opsat.common.freshness import READ_MODEL_CHANNEL
from opsat.common.testing.helpers import scalar

ALICE = ("alice", "acme", "requester")
LISTENERS = ("select count(*) from pg_stat_activity where datname = current_database()"
             f" and pid <> pg_backend_pid() and query ilike '%listen%{READ_MODEL_CHANNEL}%'")


class StatementCounter:
    """Statements the API's engine sends while a block runs."""

    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        self.engine = engine.sync_engine
        self.statements: list[str] = []

    def _seen(self, conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        self.statements.append(statement)

    def __enter__(self) -> StatementCounter:
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)

    def reads_of(self, table: str) -> int:
        return sum(1 for s in self.statements if f"FROM read_model.{table} " in s or s.endswith(f"read_model.{table}"))


async def projected_then_unprojected(intake) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    """A request whose version 1 is in the read model and version 2 only in the event store."""
    async with intake.worker():
        rid = await intake.submit(intake.token(*ALICE))
        await intake.wait_for(rid, 1)
    r = await intake.client.post(f"/api/v1/requests/{rid}/replies", json={"body": "any news?"},
                                 headers=intake.token(*ALICE))
    assert r.status_code == 200, r.text
    return rid, r.json()["version"]


@pytest.mark.intake_settings(read_your_writes_timeout_s=1.5)
async def test_a_wait_that_nothing_wakes_reads_the_read_model_twice_not_every_few_milliseconds(intake):
    rid, version = await projected_then_unprojected(intake)
    with StatementCounter(intake.client._transport.app.state.engine) as counter:  # noqa: SLF001
        r = await intake.client.get(f"/api/v1/requests/{rid}", params={"min_version": version},
                                    headers=intake.token(*ALICE))
    assert r.status_code == 200 and r.headers["x-opsat-stale"] == "true", r.text
    assert r.json()["version"] == version - 1
    # Once before waiting, once at the deadline (a poll every 20 ms read it about 75 times in 1.5 s).
    assert counter.reads_of("requests") == 2, counter.statements


@pytest.mark.intake_settings(read_your_writes_timeout_s=60)
async def test_waiters_share_one_listening_connection_and_the_projection_wakes_them(intake):
    async with intake.worker():
        rid = await intake.submit(intake.token(*ALICE))
        await intake.wait_for(rid, 1)
        readers = [intake.token(f"agent-{i}", "ops", "agent") for i in range(4)] + [intake.token(*ALICE)]
        waits = [asyncio.create_task(intake.client.get(f"/api/v1/requests/{rid}", params={"min_version": 2},
                                                       headers=headers)) for headers in readers]
        await asyncio.sleep(0.5)
        assert not any(w.done() for w in waits), [w.result().text for w in waits if w.done()]
        assert await scalar(intake.settings.database_url, LISTENERS) == 1
        reply = await intake.client.post(f"/api/v1/requests/{rid}/replies", json={"body": "any news?"},
                                         headers=intake.token(*ALICE))
        assert reply.status_code == 200, reply.text
        answers = await asyncio.wait_for(asyncio.gather(*waits), timeout=30)
    for r in answers:
        assert r.status_code == 200 and "x-opsat-stale" not in r.headers, r.text
        assert r.json()["version"] == reply.json()["version"]


@pytest.mark.intake_settings(read_your_writes_timeout_s=2.5, max_waits_per_caller=2)
async def test_a_caller_over_the_wait_cap_gets_an_immediate_stale_answer(intake):
    rid, version = await projected_then_unprojected(intake)
    waits = [asyncio.create_task(intake.client.get(f"/api/v1/requests/{rid}", params={"min_version": version},
                                                   headers=intake.token(*ALICE))) for _ in range(3)]
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1 and len(pending) == 2
    first = done.pop().result()
    assert first.status_code == 200 and first.headers["x-opsat-stale"] == "true", first.text
    for r in await asyncio.gather(*pending):  # the two admitted waits end at their deadline, still stale
        assert r.status_code == 200 and r.headers["x-opsat-stale"] == "true", r.text

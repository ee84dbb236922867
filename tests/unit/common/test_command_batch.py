"""The kit's command batch (a worker's commands decided in order, written together) on the in-memory store, with
intake's aggregate: the same judging as the handler, one command's refusal only its own, all or nothing on write."""

from __future__ import annotations

import pytest
from intake_story import AGENT, REQUESTER, STRANGER, T0, submit_command

from opsat.common.commands import CommandMeta
from opsat.common.domain import Conflict, NotFound, PreconditionFailed
from opsat.common.eventstore import StreamsMoved
from opsat.common.faults import is_transient
from opsat.common.memstore import InMemoryEventStore
from opsat.intake.domain import commands as c
from opsat.intake.service import SERVICE
from opsat.intake.settings import IntakeSettings

FIELDS = {"title": "VPN", "description": "", "impact": 1, "urgency": 1}


@pytest.fixture
def handler():
    store = InMemoryEventStore(SERVICE.registry())
    return SERVICE.command_handler(IntakeSettings(environment="test"), store, clock=lambda: T0)


def meta(n: int) -> CommandMeta:
    return CommandMeta(correlation_id=f"corr-{n}", causation_id=f"cause-{n}")


async def test_commands_on_one_stream_see_each_other_and_are_written_in_order_with_their_own_metadata(handler):
    batch = handler.batch(None)
    submitted = await batch.execute(submit_command(FIELDS, {}), REQUESTER, meta(1))
    accepted = await batch.execute(c.AcceptRequest("REQ-1", team="net"), AGENT, meta(2))
    assert (submitted.version, accepted.version) == (1, 2)
    assert await handler.store.stream_version("REQ-1") == 0  # nothing is written before the commit
    positions = await batch.commit()
    history = await handler.store.load("REQ-1")
    assert [r.event_id for r in history] == [*submitted.event_ids, *accepted.event_ids]
    assert sorted(positions.values()) == [r.position for r in history]
    assert [(r.metadata["actor"], r.metadata["causation_id"], r.metadata["tenant"]) for r in history] == [
        (REQUESTER.id, "cause-1", "org-acme"), (AGENT.id, "cause-2", "org-acme")]


async def test_a_refused_command_is_answered_with_its_error_and_the_others_are_written(handler):
    batch = handler.batch(None)
    await batch.execute(submit_command(FIELDS, {}), REQUESTER, meta(1))
    again = await batch.execute(submit_command(FIELDS, {}), REQUESTER, meta(2))  # the stream exists now
    unknown = await batch.execute(c.AcceptRequest("REQ-404", team="net"), AGENT, meta(3))
    hidden = await batch.execute(c.CancelRequest("REQ-1", "mine now"), STRANGER, meta(4))  # another organisation
    stale = await batch.execute(c.AcceptRequest("REQ-1", team="net"), AGENT,
                                CommandMeta(correlation_id="c", expected_version=7))
    dangling = await batch.execute(c.LinkRequest("REQ-1", "REQ-404", "caused_by"), AGENT, meta(5))
    accepted = await batch.execute(c.AcceptRequest("REQ-1", team="net"), AGENT, meta(6))
    assert isinstance(again, Conflict)
    assert isinstance(unknown, NotFound), unknown
    assert isinstance(hidden, NotFound), hidden
    assert isinstance(stale, PreconditionFailed)
    assert isinstance(dangling, NotFound) and dangling.field == "target_id"
    assert accepted.version == 2
    await batch.commit()
    assert [r.metadata["causation_id"] for r in await handler.store.load("REQ-1")] == ["cause-1", "cause-6"]
    assert await handler.store.stream_version("REQ-404") == 0


async def test_a_stream_changed_by_another_writer_fails_the_whole_batch_as_transient_and_writes_nothing(handler):
    await handler.execute(submit_command(FIELDS, {}), REQUESTER, CommandMeta(correlation_id="c0"))
    await handler.execute(submit_command(FIELDS, {"request_id": "REQ-2"}), REQUESTER, CommandMeta(correlation_id="c"))
    batch = handler.batch(None)
    await batch.load(["REQ-1", "REQ-2"])
    await batch.execute(c.AcceptRequest("REQ-2", team="net"), AGENT, meta(1))
    await batch.execute(c.AcceptRequest("REQ-1", team="net"), AGENT, meta(2))
    await handler.execute(c.CancelRequest("REQ-1", "changed my mind"), REQUESTER, CommandMeta(correlation_id="c3"))
    with pytest.raises(StreamsMoved) as raised:
        await batch.commit()
    assert is_transient(raised.value)  # a consumer runs its batch again, on the new state
    assert [await handler.store.stream_version(s) for s in ("REQ-1", "REQ-2")] == [2, 1]

"""Intake's commands through the kit's handler on the in-memory store: no PostgreSQL, same contract."""

from __future__ import annotations

import pytest
from intake_story import AGENT, REQUESTER, STRANGER, T0, submit_command

from opsat.common.commands import CommandMeta
from opsat.common.domain import NotFound, PreconditionFailed
from opsat.common.memstore import InMemoryEventStore
from opsat.intake.domain import commands as c
from opsat.intake.service import SERVICE
from opsat.intake.settings import IntakeSettings


@pytest.fixture
def handler():
    store = InMemoryEventStore(SERVICE.registry())
    return SERVICE.command_handler(IntakeSettings(environment="test"), store, clock=lambda: T0)


async def test_a_request_is_submitted_accepted_and_stored_with_its_tenant(handler):
    submitted = await handler.execute(submit_command({"title": "VPN", "description": "", "impact": 1, "urgency": 1},
                                                     {}), REQUESTER, CommandMeta(correlation_id="c1"))
    accepted = await handler.execute(c.AcceptRequest("REQ-1", team="net"), AGENT, CommandMeta(correlation_id="c2"))
    assert (submitted.version, accepted.version) == (1, 2)
    history = await handler.store.load("REQ-1")
    # The stream belongs to the requester's organisation, whoever acts on it.
    assert [r.metadata["tenant"] for r in history] == ["org-acme", "org-acme"]
    assert [r.metadata["actor"] for r in history] == [REQUESTER.id, AGENT.id]


async def test_a_link_to_an_unknown_request_is_not_found_and_appends_nothing(handler):
    await handler.execute(submit_command({"title": "VPN", "description": "", "impact": 1, "urgency": 1}, {}),
                          REQUESTER, CommandMeta(correlation_id="c1"))
    with pytest.raises(NotFound) as raised:
        await handler.execute(c.LinkRequest("REQ-1", "REQ-404", "caused_by"), AGENT, CommandMeta(correlation_id="c"))
    assert raised.value.field == "target_id"
    assert await handler.store.stream_version("REQ-1") == 1


async def test_if_match_and_other_tenants(handler):
    await handler.execute(submit_command({"title": "VPN", "description": "", "impact": 1, "urgency": 1}, {}),
                          REQUESTER, CommandMeta(correlation_id="c1"))
    with pytest.raises(PreconditionFailed):
        await handler.execute(c.AcceptRequest("REQ-1", team="net"), AGENT,
                              CommandMeta(correlation_id="c2", expected_version=3))
    with pytest.raises(NotFound):  # another organisation's requester: the request does not exist for them
        await handler.execute(c.CancelRequest("REQ-1", "mine now"), STRANGER, CommandMeta(correlation_id="c3"))
    assert await handler.store.stream_version("REQ-1") == 1

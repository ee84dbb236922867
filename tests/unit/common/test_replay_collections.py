"""Consumers and APIs run with the cyclic collector held back (frozen heap, rare first-generation passes), and the process
gets its own settings back afterwards, also when a replay fails; concurrent runners share the setting."""

from __future__ import annotations

import gc

import pytest

from opsat.common.collector import GC_YOUNG_THRESHOLD, fewer_collections


def test_a_replay_freezes_the_heap_and_collects_rarely_then_restores_both():
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_failed_replay_restores_the_collector_too():
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("replay failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_cycles_made_during_a_replay_are_still_collected():
    class Node:
        pass

    with fewer_collections():
        node = Node()
        node.self = node
        del node
        assert gc.collect() >= 1  # an explicit (or threshold) pass still finds cycles made meanwhile


def test_concurrent_runners_share_the_setting_and_the_last_one_out_restores_it():
    before = gc.get_threshold()
    outer, inner = fewer_collections(), fewer_collections()
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)  # the first runner stops while the second still runs
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD and gc.get_freeze_count() > 0
    inner.__exit__(None, None, None)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_a_service_api_serves_with_the_collector_held_back_and_gives_it_back_at_shutdown():
    from opsat.common.api import create_service_app
    from opsat.common.envelope import EventRegistry
    from opsat.common.settings import ServiceSettings

    # Nothing listens on port 9: the read-model watch only retries in the background, the engine never connects.
    settings = ServiceSettings(database_url="postgresql+asyncpg://nobody@127.0.0.1:9/none")
    app = create_service_app(settings=settings, title="t", description="d", registry=EventRegistry("t"), routers=[])
    before = gc.get_threshold()
    async with app.router.lifespan_context(app):
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0

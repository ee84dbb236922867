"""A replay runs with the cyclic collector held back (frozen heap, rare first-generation passes), and the process
gets its own settings back afterwards, also when the replay fails."""

from __future__ import annotations

import gc

import pytest

from opsat.common.projections import fewer_collections


def test_a_replay_freezes_the_heap_and_collects_rarely_then_restores_both():
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold()[0] == 100_000
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

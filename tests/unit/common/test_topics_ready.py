"""`ensure_topics` returns once the broker's metadata shows each topic led on every partition: a consumer
subscribing to a topic its metadata does not show yet is assigned nothing until the next refresh (30 s)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from opsat.common.kafka import wait_until_led

UNKNOWN_TOPIC = 3
LEADER_NOT_AVAILABLE = 5


def _topic(name: str, leaders: list[int], error_code: int = 0) -> dict[str, Any]:
    return {"topic": name, "error_code": error_code,
            "partitions": [{"partition": i, "leader": leader, "error_code": 0 if leader >= 0 else LEADER_NOT_AVAILABLE}
                           for i, leader in enumerate(leaders)]}


class Metadata:
    """What the broker answers, one answer per call (the last one repeats); records what was asked."""

    def __init__(self, *answers: dict[str, list[dict[str, Any]]]) -> None:
        self.answers, self.asked = list(answers), []

    async def describe(self, topics: list[str]) -> list[dict[str, Any]]:
        self.asked.append(topics)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return [t for name in topics for t in answer.get(name, [])]


async def test_it_waits_for_an_unknown_topic_and_a_partition_without_leader() -> None:
    metadata = Metadata(
        {"a": [_topic("a", [], UNKNOWN_TOPIC)], "b": [_topic("b", [1, -1])]},  # just created: not in metadata yet
        {"a": [_topic("a", [1, -1, 1])], "b": [_topic("b", [1, 1])]},
        {"a": [_topic("a", [1, 1, 1])], "b": [_topic("b", [1, 1])]},
    )
    assert await wait_until_led(metadata.describe, {"a", "b"}, timeout_s=5, interval_s=0.001)
    assert metadata.asked == [["a", "b"], ["a", "b"], ["a"]]  # a topic found led is not asked about again


async def test_led_topics_cost_one_question() -> None:
    metadata = Metadata({"a": [_topic("a", [1, 1])]})
    assert await wait_until_led(metadata.describe, {"a"}, timeout_s=5)
    assert metadata.asked == [["a"]]


async def test_after_the_timeout_it_warns_and_lets_the_start_go_on(caplog: pytest.LogCaptureFixture) -> None:
    metadata = Metadata({"a": [_topic("a", [1])], "b": [_topic("b", [-1])]})
    with caplog.at_level(logging.WARNING, logger="opsat.common.kafka"):
        assert not await wait_until_led(metadata.describe, {"a", "b"}, timeout_s=0.05, interval_s=0.01)
    assert "['b']" in caplog.text and "'a'" not in caplog.text
    assert len(metadata.asked) > 2

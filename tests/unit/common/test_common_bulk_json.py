"""bulk.json_text: a batch's JSON text, as json.dumps would read back, string keys or not."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from opsat.common.bulk import json_text


@pytest.mark.parametrize("value", [
    {"a": [1, "two", None], "é": {"nested": True}},
    [{"id": "x", "doc": {1: "one", 2: ["two"]}}],  # keys that are not strings, nested in a row
    {3: {"k": Decimal("12.50")}},
])
def test_json_text_reads_back_as_json_dumps_writes(value: object):
    assert json.loads(json_text(value)) == json.loads(json.dumps(value, default=str))


def test_json_text_writes_decimals_exactly_naive_times_as_utc_and_refuses_other_types():
    assert json.loads(json_text({"amount": Decimal("0.10"), "at": datetime(2026, 3, 1, 9, 30)})) == {
        "amount": "0.10", "at": "2026-03-01T09:30:00+00:00"}
    assert json_text(datetime(2026, 3, 1, 9, 30, tzinfo=UTC)) == '"2026-03-01T09:30:00+00:00"'
    with pytest.raises(TypeError):
        json_text({"s": {1, 2}})
    with pytest.raises(TypeError):
        json_text({1: {1, 2}})

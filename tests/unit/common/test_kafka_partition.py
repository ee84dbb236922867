"""The relay picks each event's partition itself (it builds one record batch per partition), so its choice must be
exactly the producer's: Kafka's murmur2 of the key, as aiokafka's DefaultPartitioner computes it."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from opsat.common.kafka import murmur2, partition_for


@given(st.binary(max_size=200))
def test_murmur2_is_the_hash_aiokafka_computes(data: bytes):
    assert murmur2(data) == aiokafka_murmur2(data)


@pytest.mark.parametrize(("key", "signed"), [
    (b"21", -973932308), (b"foobar", -790332482), (b"abc", 479470107),
    (b"a-little-bit-long-string", -985981536), (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
])
def test_murmur2_of_the_java_clients_test_keys(key: bytes, signed: int):
    # The values Kafka's Java client (Utils.murmur2, a signed int) gives these keys.
    assert murmur2(key) == signed & 0xFFFFFFFF


@given(st.binary(min_size=1, max_size=80), st.integers(min_value=1, max_value=64))
def test_partition_for_is_the_default_partitioners_choice(key: bytes, count: int):
    partitions = list(range(count))
    assert partition_for(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_stream_ids_spread_over_every_partition():
    placed = {partition_for(str(uuid.uuid4()).encode(), range(6)) for _ in range(600)}
    assert placed == set(range(6))

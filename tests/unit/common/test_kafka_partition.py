"""The relay picks each event's partition itself (it builds one record batch per partition), so its choice must be
exactly the producer's: Kafka's murmur2 of the key, as aiokafka's DefaultPartitioner computes it."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from opsat.common.kafka import murmur2_many, partitions_for


@given(st.integers(min_value=0, max_value=80).flatmap(
    lambda n: st.lists(st.binary(min_size=n, max_size=n), min_size=1, max_size=40)))
def test_murmur2_of_keys_of_one_length_is_the_hash_aiokafka_computes_for_each(keys: list[bytes]):
    assert murmur2_many(keys) == [aiokafka_murmur2(key) for key in keys]


@pytest.mark.parametrize(("key", "signed"), [
    (b"21", -973932308), (b"foobar", -790332482), (b"abc", 479470107),
    (b"a-little-bit-long-string", -985981536), (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
])
def test_murmur2_of_the_java_clients_test_keys(key: bytes, signed: int):
    # The values Kafka's Java client (Utils.murmur2, a signed int) gives these keys, alone and beside others.
    assert murmur2_many([key]) == [signed & 0xFFFFFFFF]
    assert murmur2_many([key, bytes(len(key)), key[::-1]])[0] == signed & 0xFFFFFFFF


@given(st.lists(st.binary(min_size=1, max_size=60), max_size=60), st.integers(min_value=1, max_value=64))
def test_partitions_for_is_the_default_partitioners_choice_for_each_key(keys: list[bytes], count: int):
    partitions = list(range(count))
    assert partitions_for(keys, partitions) == [DefaultPartitioner()(key, partitions, partitions) for key in keys]


def test_stream_ids_spread_over_every_partition():
    keys = [str(uuid.uuid4()).encode() for _ in range(600)]
    assert set(partitions_for(keys, range(6))) == set(range(6))

"""consumer.decode_record: Kafka record bytes -> ReceivedEvent, or UndecodableRecord (poison)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from aiokafka.structs import ConsumerRecord

from opsat.common.consumer import ReceivedEvent, UndecodableRecord, decode_record
from opsat.common.domain import DomainEvent
from opsat.common.envelope import EventRegistry, encode, to_cloudevent
from opsat.common.reactions import ForeignEvent, ForeignReaders


class WidgetMade(DomainEvent):
    event_type = "opsat.test.widget.made"
    schema_version = 2
    widget_id: str
    colour: str


class GadgetMade(DomainEvent):
    event_type = "opsat.test.gadget.made"
    gadget_id: str


def widget_registry() -> EventRegistry:
    registry = EventRegistry("test", [WidgetMade])

    @registry.upcaster(WidgetMade.event_type, 1)
    def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "colour": "grey"}

    return registry


AT = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def envelope(ce_type: str = "opsat.test.widget.made.v2", data: dict[str, Any] | None = None,
             **metadata: Any) -> dict[str, Any]:
    return to_cloudevent(source="/opsat/test", event_id="6f1c1f7e-0b7a-4d39-9d59-8b8f0d6f4a11", ce_type=ce_type,
                         stream_id="w1", stream_type="widget", version=3, time=AT,
                         data={"widget_id": "w1", "colour": "red"} if data is None else data,
                         metadata=metadata)


def record(value: bytes | None, *, topic: str = "opsat.test.events", partition: int = 2,
           offset: int = 41) -> ConsumerRecord:
    return ConsumerRecord(topic=topic, partition=partition, offset=offset, timestamp=0, timestamp_type=0,
                          key=b"w1", value=value, checksum=None, serialized_key_size=2,
                          serialized_value_size=len(value or b""), headers=[])


def test_a_known_type_decodes_to_the_typed_event():
    ce = envelope(tenant="acme", actor="u1", correlation_id="c1")
    received = decode_record(record(encode(ce)), [widget_registry()])
    assert isinstance(received, ReceivedEvent)
    assert received.event == WidgetMade(widget_id="w1", colour="red")
    assert received.id == "6f1c1f7e-0b7a-4d39-9d59-8b8f0d6f4a11"
    assert received.type == "opsat.test.widget.made.v2"
    assert (received.event_type, received.schema_version) == ("opsat.test.widget.made", 2)
    assert received.source == "/opsat/test"
    assert received.subject == "w1"
    assert received.sequence == 3
    assert received.time == AT
    assert received.data == {"widget_id": "w1", "colour": "red"}
    assert (received.tenant, received.actor, received.correlation_id) == ("acme", "u1", "c1")
    assert (received.topic, received.partition, received.offset) == ("opsat.test.events", 2, 41)


def test_a_decoded_event_is_the_one_its_constructor_builds():
    received = decode_record(record(encode(envelope(tenant="acme"))), [widget_registry()])
    assert set(vars(received)) == {f.name for f in dataclasses.fields(ReceivedEvent)}  # every field, no other
    built = ReceivedEvent(**vars(received))
    assert received == built
    with pytest.raises(dataclasses.FrozenInstanceError):
        received.id = "changed"  # type: ignore[misc]


def test_an_old_version_is_upcast_on_decode():
    ce = envelope("opsat.test.widget.made.v1", {"widget_id": "w1"})
    received = decode_record(record(encode(ce)), [widget_registry()])
    assert received.event == WidgetMade(widget_id="w1", colour="grey")
    assert received.schema_version == 1
    assert received.data == {"widget_id": "w1"}  # the raw data stays as it came


def test_an_unknown_type_decodes_untyped():
    ce = envelope("opsat.other.thing.happened.v1", {"anything": [1, 2]})
    received = decode_record(record(encode(ce)), [widget_registry()])
    assert received.event is None
    assert received.event_type == "opsat.other.thing.happened"
    assert received.data == {"anything": [1, 2]}
    assert received.tenant is None and received.actor is None and received.correlation_id is None


def test_without_registries_everything_decodes_untyped():
    received = decode_record(record(encode(envelope())))
    assert received.event is None
    assert received.data == {"widget_id": "w1", "colour": "red"}


def test_the_registry_that_knows_the_type_is_used():
    ce = envelope("opsat.test.gadget.made.v1", {"gadget_id": "g1"})
    received = decode_record(record(encode(ce)), [widget_registry(), EventRegistry("gadgets", [GadgetMade])])
    assert received.event == GadgetMade(gadget_id="g1")


class WidgetSeen(ForeignEvent):
    """Another service's reading of the widget events: only what it needs, v1 upgraded, v2 as it is."""

    event_type: ClassVar[str] = "opsat.test.widget.made"
    versions: ClassVar[frozenset[int]] = frozenset({2})
    upgrades: ClassVar[Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {
        1: lambda data: {**data, "colour": "unknown"}}
    colour: str


def test_tolerant_readers_read_a_foreign_event_as_the_record_is_decoded():
    readers = ForeignReaders((WidgetSeen,))
    assert decode_record(record(encode(envelope())), [readers]).event == WidgetSeen(colour="red")
    old = decode_record(record(encode(envelope("opsat.test.widget.made.v1", {"widget_id": "w1"}))), [readers])
    assert old.event == WidgetSeen(colour="unknown")
    # A version the reader does not take is left unread; a type it does not read, too.
    assert decode_record(record(encode(envelope("opsat.test.widget.made.v3"))), [readers]).event is None
    assert decode_record(record(encode(envelope("opsat.test.gadget.made.v1", {"gadget_id": "g"}))),
                         [readers]).event is None


def test_foreign_data_that_does_not_fit_the_reader_is_undecodable():
    with pytest.raises(UndecodableRecord, match="colour"):
        decode_record(record(encode(envelope(data={"widget_id": "w1"}))), [ForeignReaders((WidgetSeen,))])


def test_a_z_suffixed_time_decodes():
    ce = envelope()
    ce["time"] = "2026-01-05T09:30:00Z"
    assert decode_record(record(encode(ce))).time == AT


# --- poison records ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"not json",
        b'{"specversion": "1.0",',
        b"\xff\xfe\x00garbage",
        b"[]",
        b"42",
        b"null",
        None,  # a tombstone
    ],
)
def test_malformed_values_raise_undecodable(value: bytes | None):
    with pytest.raises(UndecodableRecord):
        decode_record(record(value), [widget_registry()])


@pytest.mark.parametrize("missing", ["id", "type", "source", "subject", "sequence", "time", "data"])
def test_a_missing_required_attribute_raises_undecodable(missing: str):
    ce = envelope()
    del ce[missing]
    with pytest.raises(UndecodableRecord, match=missing):
        decode_record(record(encode(ce)))


@pytest.mark.parametrize("sequence", ["three", "", "1.5", None, [1]])
def test_a_bad_sequence_raises_undecodable(sequence: Any):
    ce = envelope()
    ce["sequence"] = sequence
    with pytest.raises(UndecodableRecord):
        decode_record(record(encode(ce)))


@pytest.mark.parametrize("ce_type", ["opsat.test.widget.made", "opsat.test.widget.made.vX", ""])
def test_an_unversioned_type_raises_undecodable(ce_type: str):
    ce = envelope()
    ce["type"] = ce_type
    with pytest.raises(UndecodableRecord):
        decode_record(record(encode(ce)))


@pytest.mark.parametrize("time", ["yesterday", "", "2026-13-01T00:00:00Z"])
def test_a_bad_time_raises_undecodable(time: str):
    ce = envelope()
    ce["time"] = time
    with pytest.raises(UndecodableRecord):
        decode_record(record(encode(ce)))


def test_a_known_type_with_invalid_data_raises_undecodable():
    ce = envelope(data={"widget_id": "w1", "colour": "red", "unexpected": True})
    with pytest.raises(UndecodableRecord, match="ValidationError"):
        decode_record(record(encode(ce)), [widget_registry()])


def test_a_known_type_at_a_version_without_upcaster_raises_undecodable():
    registry = EventRegistry("test", [WidgetMade])  # no upcaster from v1
    ce = envelope("opsat.test.widget.made.v1", {"widget_id": "w1"})
    with pytest.raises(UndecodableRecord):
        decode_record(record(encode(ce)), [registry])


def test_undecodable_chains_the_cause():
    with pytest.raises(UndecodableRecord) as info:
        decode_record(record(b"not json"))
    assert isinstance(info.value.__cause__, json.JSONDecodeError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("event_id", [None, 17])
def test_an_event_id_that_is_not_a_string_raises_undecodable(event_id: Any):
    # The projection runner stores `event.id` in processed_events (NOT NULL, text): a null id
    # would fail there, outside the retry/park path, and stop the runner instead of parking the record.
    ce = envelope()
    ce["id"] = event_id
    with pytest.raises(UndecodableRecord):
        decode_record(record(encode(ce)))


"""EventRegistry (registration, upcasting, schemas), CloudEvent building and type parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from opsat.common.domain import DomainEvent
from opsat.common.envelope import (
    EventMetadata,
    EventRegistry,
    UnknownEventType,
    encode,
    split_type,
    to_cloudevent,
)


class ThingCreated(DomainEvent):
    """A thing was created."""

    event_type = "opsat.test.thing.created"
    thing_id: str
    name: str


class ThingRenamed(DomainEvent):
    """A thing was renamed (schema v3: v2 added `reason`, v3 added `by`)."""

    event_type = "opsat.test.thing.renamed"
    schema_version = 3
    thing_id: str
    name: str
    reason: str
    by: str


class ThingArchived(DomainEvent):
    """Version 2 of an event whose v1 lacked `archived_by`."""

    event_type = "opsat.test.thing.archived"
    schema_version = 2
    thing_id: str
    archived_by: str


def registry_with_upcasters() -> EventRegistry:
    registry = EventRegistry("test", [ThingCreated, ThingRenamed, ThingArchived])

    @registry.upcaster(ThingArchived.event_type, 1)
    def _archived_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "archived_by": "unknown"}

    @registry.upcaster(ThingRenamed.event_type, 1)
    def _renamed_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "reason": "not recorded"}

    @registry.upcaster(ThingRenamed.event_type, 2)
    def _renamed_v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "by": "system"}

    return registry


# --- registration ------------------------------------------------------------------------


def test_registering_the_same_event_type_twice_raises():
    registry = EventRegistry("test", [ThingCreated])
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(ThingCreated)


def test_two_classes_with_the_same_event_type_cannot_both_register():
    class Impostor(DomainEvent):
        event_type = ThingCreated.event_type
        schema_version = 2
        thing_id: str

    with pytest.raises(ValueError):
        EventRegistry("test", [ThingCreated, Impostor])


def test_register_returns_the_class_and_registry_knows_it():
    registry = EventRegistry("test")
    assert registry.register(ThingCreated) is ThingCreated
    assert ThingCreated.event_type in registry
    assert "opsat.test.unknown" not in registry
    assert registry.event_classes == [ThingCreated]
    assert registry.source == "/opsat/test"


def test_cloudevent_type_appends_the_schema_version():
    registry = registry_with_upcasters()
    assert registry.cloudevent_type(ThingCreated) == "opsat.test.thing.created.v1"
    assert registry.cloudevent_type(ThingArchived) == "opsat.test.thing.archived.v2"


# --- decoding and upcasting --------------------------------------------------------------


def test_decode_current_version_gives_the_class():
    event = registry_with_upcasters().decode(ThingCreated.event_type, 1, {"thing_id": "t1", "name": "n"})
    assert event == ThingCreated(thing_id="t1", name="n")


def test_decode_upcasts_a_v1_payload_into_the_v2_class():
    event = registry_with_upcasters().decode(ThingArchived.event_type, 1, {"thing_id": "t1"})
    assert isinstance(event, ThingArchived)
    assert event == ThingArchived(thing_id="t1", archived_by="unknown")


def test_decode_runs_the_whole_upcaster_chain_in_order():
    registry = registry_with_upcasters()
    from_v1 = registry.decode(ThingRenamed.event_type, 1, {"thing_id": "t1", "name": "new"})
    assert from_v1 == ThingRenamed(thing_id="t1", name="new", reason="not recorded", by="system")
    from_v2 = registry.decode(ThingRenamed.event_type, 2, {"thing_id": "t1", "name": "new", "reason": "typo"})
    assert from_v2 == ThingRenamed(thing_id="t1", name="new", reason="typo", by="system")


def test_decode_current_version_runs_no_upcaster():
    registry = EventRegistry("test", [ThingArchived])
    calls = []

    @registry.upcaster(ThingArchived.event_type, 1)
    def _up(data: dict[str, Any]) -> dict[str, Any]:
        calls.append(data)
        return {**data, "archived_by": "x"}

    event = registry.decode(ThingArchived.event_type, 2, {"thing_id": "t1", "archived_by": "u1"})
    assert event.archived_by == "u1"
    assert calls == []


def test_decode_without_the_upcaster_a_v1_payload_fails():
    registry = EventRegistry("test", [ThingArchived])
    # the missing step of the chain is named, rather than the v1 payload failing validation as v2
    with pytest.raises(KeyError, match="opsat.test.thing.archived"):
        registry.decode(ThingArchived.event_type, 1, {"thing_id": "t1"})


def test_decode_unknown_type_raises_unknown_event_type():
    with pytest.raises(UnknownEventType) as info:
        registry_with_upcasters().decode("opsat.test.nope", 1, {})
    assert isinstance(info.value, LookupError)
    assert "opsat.test.nope" in str(info.value)


def test_decode_rejects_extra_and_missing_fields():
    registry = registry_with_upcasters()
    with pytest.raises(ValidationError):
        registry.decode(ThingCreated.event_type, 1, {"thing_id": "t1", "name": "n", "extra": 1})
    with pytest.raises(ValidationError):
        registry.decode(ThingCreated.event_type, 1, {"thing_id": "t1"})


def test_decoded_events_are_frozen():
    event = registry_with_upcasters().decode(ThingCreated.event_type, 1, {"thing_id": "t1", "name": "n"})
    with pytest.raises(ValidationError):
        event.name = "other"  # type: ignore[misc]


# --- schemas -----------------------------------------------------------------------------


def test_json_schemas_are_keyed_by_cloudevents_type_with_matching_ids():
    schemas = registry_with_upcasters().json_schemas()
    assert set(schemas) == {
        "opsat.test.thing.created.v1",
        "opsat.test.thing.renamed.v3",
        "opsat.test.thing.archived.v2",
    }
    for ce_type, schema in schemas.items():
        assert schema["$id"] == f"urn:opsat:schema:{ce_type}"
    assert set(schemas["opsat.test.thing.archived.v2"]["properties"]) == {"thing_id", "archived_by"}
    assert set(schemas["opsat.test.thing.archived.v2"]["required"]) == {"thing_id", "archived_by"}


def test_asyncapi_summaries_come_from_the_docstrings():
    doc = registry_with_upcasters().asyncapi("opsat.test.events")
    messages = doc["components"]["messages"]
    assert messages["opsat_test_thing_created_v1"]["summary"] == "A thing was created."
    assert messages["opsat_test_thing_created_v1"]["name"] == "opsat.test.thing.created.v1"
    assert doc["channels"]["opsat_test_events"]["address"] == "opsat.test.events"


# --- split_type --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ce_type", "expected"),
    [
        ("opsat.intake.request.submitted.v1", ("opsat.intake.request.submitted", 1)),
        ("opsat.test.thing.renamed.v12", ("opsat.test.thing.renamed", 12)),
        # a ".v" inside the name must not confuse the split: only the last one is the version
        ("opsat.vendor.value.changed.v2", ("opsat.vendor.value.changed", 2)),
        ("x.v1", ("x", 1)),
    ],
)
def test_split_type_good(ce_type: str, expected: tuple[str, int]):
    assert split_type(ce_type) == expected


@pytest.mark.parametrize(
    "ce_type",
    [
        "",
        "opsat.intake.request.submitted",
        "opsat.intake.request.submitted.v",
        "opsat.intake.request.submitted.vx",
        "opsat.intake.request.submitted.v1a",
        "opsat.intake.request.submitted.v-1",
        "opsat.vendor.created",
        ".v1",
        "v1",
    ],
)
def test_split_type_bad(ce_type: str):
    with pytest.raises(ValueError):
        split_type(ce_type)


def test_split_type_round_trips_cloudevent_type():
    registry = registry_with_upcasters()
    for cls in registry.event_classes:
        assert split_type(registry.cloudevent_type(cls)) == (cls.event_type, cls.schema_version)


# --- to_cloudevent / metadata ------------------------------------------------------------

AT = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def cloudevent(metadata: dict[str, Any]) -> dict[str, Any]:
    return to_cloudevent(source="/opsat/test", event_id="e-1", ce_type="opsat.test.thing.created.v1",
                         stream_id="t1", stream_type="thing", version=7, time=AT,
                         data={"thing_id": "t1", "name": "n"}, metadata=metadata)


EXTENSIONS = {"correlationid", "causationid", "tenant", "actor", "traceparent"}


def test_to_cloudevent_core_attributes():
    ce = cloudevent({})
    assert ce["specversion"] == "1.0"
    assert ce["id"] == "e-1"
    assert ce["source"] == "/opsat/test"
    assert ce["type"] == "opsat.test.thing.created.v1"
    assert ce["subject"] == "t1"
    assert ce["streamtype"] == "thing"
    assert ce["sequence"] == "7"  # a string, as CloudEvents extension values
    assert datetime.fromisoformat(ce["time"]) == AT
    assert ce["datacontenttype"] == "application/json"
    assert ce["dataschema"] == "urn:opsat:schema:opsat.test.thing.created.v1"
    assert ce["data"] == {"thing_id": "t1", "name": "n"}


def test_to_cloudevent_without_metadata_has_no_extensions():
    assert not EXTENSIONS & set(cloudevent({}))


def test_to_cloudevent_skips_empty_extensions():
    ce = cloudevent({"correlation_id": "c1", "causation_id": None, "tenant": "", "actor": "u1"})
    assert ce["correlationid"] == "c1"
    assert ce["actor"] == "u1"
    assert "causationid" not in ce and "tenant" not in ce and "traceparent" not in ce


def test_to_cloudevent_carries_all_extensions_from_event_metadata():
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    meta = EventMetadata(actor="u1", tenant="acme", correlation_id="c1", causation_id="e-0", traceparent=tp)
    ce = cloudevent(meta.as_dict())
    assert {k: ce[k] for k in EXTENSIONS} == {
        "correlationid": "c1", "causationid": "e-0", "tenant": "acme", "actor": "u1", "traceparent": tp,
    }


def test_to_cloudevent_keeps_a_non_utc_offset():
    ce = to_cloudevent(source="/s", event_id="e", ce_type="a.v1", stream_id="s", stream_type="t", version=1,
                       time=AT.astimezone(timezone(timedelta(hours=2))), data={}, metadata={})
    assert datetime.fromisoformat(ce["time"]) == AT


def test_event_metadata_as_dict_drops_none():
    meta = EventMetadata(actor="u1", tenant="acme", correlation_id="c1")
    assert meta.as_dict() == {"actor": "u1", "tenant": "acme", "correlation_id": "c1"}


def test_encode_is_compact_utf8_json():
    raw = encode({"a": "é", "b": [1, 2]})
    assert raw == '{"a":"é","b":[1,2]}'.encode()
    assert json.loads(raw) == {"a": "é", "b": [1, 2]}


@given(st.dictionaries(st.text(), st.one_of(st.text(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                                            st.none(), st.booleans())))
def test_encode_gives_the_bytes_of_compact_json_dumps(envelope: dict[str, Any]):
    assert encode(envelope) == json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()

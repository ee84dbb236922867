"""CloudEvents 1.0 envelope, the event-type registry, JSON Schemas, upcasters, AsyncAPI.

On the wire every event is a structured-mode CloudEvent (JSON) whose `type` is
f"{event_type}.v{schema_version}" and whose `data` is the domain event's JSON.
Extensions: `sequence` (stream version), `streamtype`, `correlationid`, `causationid`,
`tenant`, `actor`, `traceparent`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from opsat.common.domain import DomainEvent

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownEventType(LookupError):
    pass


@dataclass(frozen=True)
class EventMetadata:
    """Who and why, stored with every event and copied into the CloudEvent extensions."""

    actor: str
    tenant: str
    correlation_id: str
    causation_id: str | None = None
    traceparent: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class EventRegistry:
    """The event types one service publishes: class lookup, schemas and upcasters.

    An upcaster turns a payload of schema version N into N+1, so old events read as the current class.
    """

    def __init__(self, service: str, events: Iterable[type[DomainEvent]] = ()) -> None:
        self.service = service
        self.source = f"/opsat/{service}"
        self._by_type: dict[str, type[DomainEvent]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        for cls in events:
            self.register(cls)

    def register(self, cls: type[DomainEvent]) -> type[DomainEvent]:
        if cls.event_type in self._by_type:
            raise ValueError(f"event type {cls.event_type} registered twice")
        self._by_type[cls.event_type] = cls
        return cls

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        def decorate(fn: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_version)] = fn
            return fn

        return decorate

    def __contains__(self, event_type: str) -> bool:
        return event_type in self._by_type

    @property
    def event_classes(self) -> list[type[DomainEvent]]:
        return list(self._by_type.values())

    def cloudevent_type(self, cls: type[DomainEvent]) -> str:
        return f"{cls.event_type}.v{cls.schema_version}"

    def decode(self, event_type: str, schema_version: int, data: dict[str, Any]) -> DomainEvent:
        cls = self._by_type.get(event_type)
        if cls is None:
            raise UnknownEventType(event_type)
        if schema_version > cls.schema_version:
            raise UnknownEventType(f"{event_type}.v{schema_version} is newer than this build knows")
        version = schema_version
        while version < cls.schema_version:
            data = self._upcasters[(event_type, version)](data)
            version += 1
        return cls.model_validate(data)

    # --- schemas -------------------------------------------------------------------------
    def json_schemas(self) -> dict[str, dict[str, Any]]:
        """JSON Schema of each event's `data`, keyed by CloudEvents type."""
        schemas = {}
        for cls in self._by_type.values():
            schema = cls.model_json_schema(mode="serialization")
            schema["$id"] = f"urn:opsat:schema:{self.cloudevent_type(cls)}"
            schemas[self.cloudevent_type(cls)] = schema
        return schemas

    def asyncapi(self, topic: str) -> dict[str, Any]:
        """An AsyncAPI 3.0 document for the service's topic, generated from the registry."""
        messages: dict[str, Any] = {}
        for ce_type, schema in self.json_schemas().items():
            name = ce_type.replace(".", "_")
            messages[name] = {
                "name": ce_type,
                "title": ce_type,
                "contentType": "application/cloudevents+json",
                "summary": (self._by_type[ce_type.rsplit(".v", 1)[0]].__doc__ or "").strip(),
                "payload": cloudevent_schema(ce_type, schema),
            }
        channel = topic.replace(".", "_")
        return {
            "asyncapi": "3.0.0",
            "info": {
                "title": f"opsat {self.service} events",
                "version": "1.0.0",
                "description": f"Domain events published by the {self.service} service, "
                "as CloudEvents 1.0 in structured JSON mode. Kafka key = stream id (per-aggregate order).",
            },
            "defaultContentType": "application/cloudevents+json",
            "channels": {
                channel: {
                    "address": topic,
                    "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
                }
            },
            "operations": {
                f"publish_{channel}": {
                    "action": "send",
                    "channel": {"$ref": f"#/channels/{channel}"},
                    "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in messages],
                }
            },
            "components": {"messages": messages},
        }


def cloudevent_schema(ce_type: str, data_schema: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema of a whole CloudEvent carrying `data_schema` as its data.

    `data_schema` keeps its `$id` and `$defs`, so its internal references resolve inside it."""
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["specversion", "id", "source", "type", "subject", "time", "data", "sequence"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "format": "uuid"},
            "source": {"type": "string"},
            "type": {"const": ce_type},
            "subject": {"type": "string", "description": "stream (aggregate) id"},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "dataschema": {"type": "string"},
            "sequence": {"type": "string", "description": "stream version, from 1"},
            "streamtype": {"type": "string"},
            "correlationid": {"type": "string"},
            "causationid": {"type": "string"},
            "tenant": {"type": "string"},
            "actor": {"type": "string"},
            "traceparent": {"type": "string"},
            "data": data_schema,
        },
    }
    return schema


def to_cloudevent(
    *,
    source: str,
    event_id: str,
    ce_type: str,
    stream_id: str,
    stream_type: str,
    version: int,
    time: datetime,
    data: dict[str, Any],
    metadata: dict[str, Any],
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": ce_type,
        "subject": stream_id,
        "time": time.isoformat(),
        "datacontenttype": "application/json",
        "dataschema": f"urn:opsat:schema:{ce_type}",
        "sequence": str(version),
        "streamtype": stream_type,
    }
    for key, ext in (
        ("correlation_id", "correlationid"),
        ("causation_id", "causationid"),
        ("tenant", "tenant"),
        ("actor", "actor"),
        ("traceparent", "traceparent"),
    ):
        if metadata.get(key):
            event[ext] = metadata[key]
    event["data"] = data
    return event


def split_type(ce_type: str) -> tuple[str, int]:
    """'opsat.intake.request.submitted.v1' -> ('opsat.intake.request.submitted', 1)."""
    base, _, version = ce_type.rpartition(".v")
    if not base or not version.isdigit():
        raise ValueError(f"not a versioned event type: {ce_type!r}")
    return base, int(version)


def encode(event: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (orjson: the bytes json.dumps(separators=(",", ":"), ensure_ascii=False) gives for an
    envelope's strings and numbers, a tenth of its cost, paid once per event by the relay)."""
    return orjson.dumps(event)

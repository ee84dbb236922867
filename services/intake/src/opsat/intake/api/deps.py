"""Annotated dependencies of the intake routes."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header, Request

from opsat.common import observability as obs
from opsat.common.domain import InvalidInput
from opsat.intake.app.handlers import IntakeHandlers
from opsat.intake.projections.queries import IntakeQueries

_ETAG = re.compile(r'^(?:W/)?"?(\d{1,9})"?$')


def get_handlers(request: Request) -> IntakeHandlers:
    return request.app.state.handlers


def get_queries(request: Request) -> IntakeQueries:
    return request.app.state.queries


def correlation_id() -> str:
    return obs.correlation_id.get() or ""


def traceparent(request: Request) -> str | None:
    return request.scope.get("state", {}).get("traceparent")


def if_match(
    value: Annotated[str | None, Header(alias="If-Match", description='expected stream version, e.g. "3"')] = None,
) -> int | None:
    if value is None:
        return None
    match = _ETAG.match(value.strip())
    if not match:
        raise InvalidInput('If-Match must be a version such as "3"', field="If-Match")
    return int(match.group(1))


def idempotency_key(
    value: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200,
                                        description="repeat a command safely: the first result is returned")] = None,
) -> str | None:
    return value


Handlers = Annotated[IntakeHandlers, Depends(get_handlers)]
Queries = Annotated[IntakeQueries, Depends(get_queries)]
CorrelationId = Annotated[str, Depends(correlation_id)]
TraceParent = Annotated[str | None, Depends(traceparent)]
IfMatch = Annotated[int | None, Depends(if_match)]
IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]

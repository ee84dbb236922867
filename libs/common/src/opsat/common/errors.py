"""RFC 9457 problem+json for every service: domain errors, validation errors, everything else.

The domain raises `opsat.common.domain` errors without knowing HTTP; this module maps them once.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import asyncpg
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from opsat.common import faults
from opsat.common.auth import NotAllowed, Unauthenticated, judge_before_input
from opsat.common.domain import (
    AlreadyExists,
    Conflict,
    DomainError,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    PreconditionFailed,
)

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2
# Errors that may be transient, each given its own handler: a handler for a class (unlike one for bare
# Exception) answers without re-raising, so the client keeps its keep-alive connection.
MAYBE_TRANSIENT: tuple[type[BaseException], ...] = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                                                    SQLAlchemyError, KafkaError)

PROBLEM_JSON = "application/problem+json"

STATUS_BY_ERROR: list[tuple[type[DomainError], int]] = [
    (NotFound, 404),
    (Forbidden, 403),
    (AlreadyExists, 409),
    (Conflict, 409),
    (PreconditionFailed, 412),
    (Gone, 410),
    (InvalidInput, 422),
    (DomainError, 422),
]

TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    412: "Precondition failed",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


def _slug(code: str) -> str:
    out = []
    for ch in code:
        if ch.isupper() and out:
            out.append("-")
        out.append(ch.lower() if ch != "_" else "-")
    return "".join(out)


def problem(status: int, detail: str, *, code: str | None = None, instance: str | None = None,
            errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"/problems/{_slug(code)}" if code else "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def status_for(exc: DomainError) -> int:
    return next(status for cls, status in STATUS_BY_ERROR if isinstance(exc, cls))


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        where, rest = parts[0], parts[1:]
        if where == "body":
            return ".".join(rest) or "body"  # the whole body (an array, a string, nothing) is at fault
        return f"{where}.{'.'.join(rest)}" if rest else where
    return ".".join(parts)


def allowed_methods(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for the request's path (what a client was told it may use)."""
    methods: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)), request.url.path):
            methods |= {m.upper() for m in item if m in ("get", "post", "put", "patch", "delete")}
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        errors = [{"field": exc.field, "reason": exc.detail}] if exc.field else None
        return problem(status_for(exc), exc.detail, code=exc.code, instance=request.url.path, errors=errors)

    @app.exception_handler(Unauthenticated)
    async def _unauthenticated(request: Request, exc: Unauthenticated) -> JSONResponse:
        return unauthenticated_problem(request, exc)

    @app.exception_handler(NotAllowed)
    async def _not_allowed(request: Request, exc: NotAllowed) -> JSONResponse:
        return problem(403, str(exc), code="forbidden", instance=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI reads the input before the guards run; who asks and what they may see are judged first.
        in_path = any(tuple(e.get("loc", ()))[:1] == ("path",) for e in exc.errors())
        denied = await problem_before_input(request, stream=not in_path)
        if denied is not None:
            return denied
        errors = [{"field": _field_path(tuple(e.get("loc", ()))), "reason": e.get("msg", "invalid")}
                  for e in exc.errors()]
        invalid_json = [e for e in exc.errors() if e.get("type") == "json_invalid"]
        if invalid_json:
            reason = invalid_json[0].get("ctx", {}).get("error", "invalid JSON")
            return problem(400, "The request body is not valid JSON.", code="malformed-json",
                           instance=request.url.path, errors=[{"field": "body", "reason": str(reason)}])
        summary = "; ".join(f"{e['field'] or 'body'}: {e['reason']}" for e in errors[:5])
        return problem(422, summary, code="validation-error", instance=request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 413:  # the body is input: who asks and what they may see are judged first
            denied = await problem_before_input(request)
            if denied is not None:
                return denied
        code = "body-too-large" if exc.status_code == 413 else None
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every method of the path, not only those of the first route matched
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem(exc.status_code, str(exc.detail), code=code, instance=request.url.path,
                       headers=headers or None)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or ""
        if isinstance(exc, DataError) or sqlstate.startswith("22"):  # class 22: data exception
            log.warning("database refused a value on %s: %s", request.url.path, exc.orig)
            return problem(422, "A value in the request cannot be stored or compared.", code="invalid-value",
                           instance=request.url.path)
        return _unavailable_or_internal(request, exc)

    async def _maybe_transient(request: Request, exc: Exception) -> JSONResponse:
        return _unavailable_or_internal(request, exc)

    for cls in MAYBE_TRANSIENT:
        app.add_exception_handler(cls, _maybe_transient)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if faults.is_transient(exc):  # e.g. wrapped in an exception group by a task group
            return _unavailable(request, exc)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "An unexpected error occurred; it has been logged.", instance=request.url.path)


def unauthenticated_problem(request: Request, exc: Unauthenticated) -> JSONResponse:
    return problem(401, str(exc), code="unauthenticated", instance=request.url.path,
                   headers={"WWW-Authenticate": 'Bearer realm="opsat"'})


_STRONG_ETAG = re.compile(r'^"(\d{1,9})"$')


async def problem_before_input(request: Request, *, stream: bool = True) -> JSONResponse | None:
    """What the checks that come before input answer for a request whose input is refused (malformed, invalid
    or too large), or None when they pass: authentication (401), the route's roles (403), and for a command on
    an existing stream (with `stream`) its visibility to the caller (404) and If-Match (412)."""
    try:
        actor = await judge_before_input(request)
        endpoint = getattr(request.scope.get("route"), "endpoint", None)
        command_cls = getattr(endpoint, "command_cls", None)
        commands = getattr(request.app.state, "commands", None)
        if stream and actor is not None and command_cls is not None and commands is not None:
            stream_id = request.path_params.get(endpoint.id_name)  # type: ignore[union-attr]
            if isinstance(stream_id, str):
                etag = _STRONG_ETAG.match(request.headers.get("if-match", ""))  # malformed: an input error, later
                await commands.judge_stream(command_cls, stream_id, actor, int(etag.group(1)) if etag else None)
    except Unauthenticated as exc:
        return unauthenticated_problem(request, exc)
    except NotAllowed as exc:
        return problem(403, str(exc), code="forbidden", instance=request.url.path)
    except DomainError as exc:
        return problem(status_for(exc), exc.detail, code=exc.code, instance=request.url.path)
    except Exception as exc:  # raised inside an exception handler it would be a bare 500
        if faults.is_transient(exc):
            return _unavailable(request, exc)
        raise
    return None


def _unavailable(request: Request, exc: BaseException) -> JSONResponse:
    # One line, no traceback: during an outage every request fails the same way.
    log.warning("%s %s: dependency unavailable (%s: %s)", request.method, request.url.path, type(exc).__name__,
                str(exc)[:200])
    return problem(503, "The database is unavailable; retry later.", code="database-unavailable",
                   instance=request.url.path, headers={"Retry-After": str(RETRY_AFTER_S)})


def _unavailable_or_internal(request: Request, exc: Exception) -> JSONResponse:
    """503 with Retry-After for a transient fault; otherwise a logged 500 (answered, not re-raised)."""
    if faults.is_transient(exc):
        return _unavailable(request, exc)
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "An unexpected error occurred; it has been logged.", instance=request.url.path)

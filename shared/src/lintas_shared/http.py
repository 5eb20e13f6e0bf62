"""HTTP conventions shared by every service's FastAPI app.

- Errors are RFC 9457 problem details (`application/problem+json`); validation errors
  carry an `errors` list naming each bad field by its path.
- `/healthz` says the process is alive; `/readyz` says its dependencies answer.
- Each request gets a correlation id (`X-Request-ID`), bound into every log line.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
ReadinessCheck = Callable[[], Awaitable[bool]]


class FieldError(BaseModel):
    """One invalid field: its path in the request and what is wrong with it."""

    field: str
    message: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem details body."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    errors: Sequence[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem-details response."""
    body = Problem(
        title=title, status=status, detail=detail, errors=list(errors) if errors else None
    ).model_dump(exclude_none=True)
    body.update(extra)
    return JSONResponse(
        body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {})
    )


def field_path(loc: Sequence[str | int]) -> str:
    """'worker.phone' for FastAPI's ('body', 'worker', 'phone')."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<body>"


def validation_errors(errors: Sequence[Any]) -> list[FieldError]:
    """Turn pydantic/FastAPI error dicts into named field errors (never echoing input)."""
    result = []
    for err in errors:
        message = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        result.append(
            FieldError(
                field=field_path(err.get("loc", ())),
                message=message,
                type=str(err.get("type", "value_error")),
            )
        )
    return result


async def _on_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem_response(
        422,
        "Invalid request",
        "One or more fields are invalid.",
        errors=validation_errors(exc.errors()),
    )


async def _on_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem_response(exc.status_code, _title(exc.status_code), detail, headers=exc.headers)


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install_conventions(
    app: FastAPI,
    readiness: Mapping[str, ReadinessCheck],
    asyncapi: Callable[[], Any] | None = None,
    max_body_bytes: int = 256_000,
) -> None:
    """Add problem-details errors, request ids, body limits, health, readiness, AsyncAPI."""
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)

    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = request.headers.get("x-request-id") or str(uuid.uuid4())
        rid = rid[:64]
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > max_body_bytes:
            return problem_response(
                413, "Content Too Large", f"Request bodies are limited to {max_body_bytes} bytes."
            )
        with structlog.contextvars.bound_contextvars(request_id=rid):
            response = await call_next(request)
        response.headers["X-Request-ID"] = rid
        return response

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Kafka and the store answer",
        responses={503: {"description": "A dependency does not answer"}},
    )
    async def readyz() -> Response:
        checks = {name: await check() for name, check in readiness.items()}
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    if asyncapi is not None:
        spec = asyncapi

        @app.get(
            "/v1/asyncapi.json",
            tags=["documentation"],
            summary="AsyncAPI 3.0 document of this service's events",
        )
        async def asyncapi_document() -> Any:
            return spec()

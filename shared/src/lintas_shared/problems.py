"""RFC 9457 problem details: the one error shape of every Lintas HTTP API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

PROBLEM_JSON = "application/problem+json"


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

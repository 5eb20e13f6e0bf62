"""Parameters and fields as strict as their OpenAPI description.

- `DateTimeParam`: an RFC 3339 date-time with its offset (`format: date-time`), and
  nothing else: pydantic alone would also take `0` (a unix time) or a naive time.
- `DateParam`: an RFC 3339 full-date (`format: date`), not a number or a date-time.
- `known_query(...)`: a dependency refusing query parameters the operation does not
  document (422, each named), so a misspelt filter is never silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Annotated, Final

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BeforeValidator

RFC3339: Final = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _rfc3339(value: object) -> object:
    if isinstance(value, str) and not RFC3339.search(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-01-31T00:00:00Z")
    if not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 date-time")
    return value


DateTimeParam = Annotated[datetime, BeforeValidator(_rfc3339)]
FULL_DATE: Final = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _full_date(value: object) -> object:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not FULL_DATE.search(value):
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


DateParam = Annotated[date, BeforeValidator(_full_date)]


def known_query(*names: str) -> Callable[[Request], Awaitable[None]]:
    """A dependency that refuses any query parameter but `names`."""
    allowed = frozenset(names)

    # async: FastAPI runs a plain function dependency in a worker thread, each request.
    async def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise RequestValidationError(
                [
                    {
                        "loc": ("query", name),
                        "msg": "unknown query parameter",
                        "type": "extra_forbidden",
                    }
                    for name in unknown
                ]
            )

    return check

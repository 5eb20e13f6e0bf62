"""Intake's and referral's HTTP APIs, called on behalf of the signed-in person.

Every call carries a fresh person token (Ed25519, a minute and a half), so the services
scope, validate and audit exactly as for an organisation's API key, and name the person.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from lintas_shared.person_tokens import (
    INTAKE_AUDIENCE,
    REFERRAL_AUDIENCE,
    PersonClaims,
    issue_person_token,
)


@dataclass(frozen=True)
class FieldProblem:
    """One bad field, as the API named it."""

    field: str
    message: str
    type: str


@dataclass
class ApiProblemError(Exception):
    """The service answered with an error (RFC 9457 problem details)."""

    status: int
    title: str
    detail: str | None = None
    errors: list[FieldProblem] = field(default_factory=list)
    body: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.title}"


@dataclass
class ServiceUnavailableError(Exception):
    """The service did not answer in time, or not at all."""

    service: str

    def __str__(self) -> str:
        return f"{self.service} unavailable"


@dataclass(frozen=True)
class Answer:
    """A successful answer: its JSON (or text) and headers."""

    status: int
    data: Any
    headers: httpx.Headers


class ServiceClient:
    """One service's API (intake or referral), for one audience of person tokens."""

    def __init__(
        self, name: str, client: httpx.AsyncClient, audience: str, signing_key_pem: str
    ) -> None:
        self.name = name
        self._client = client
        self._audience = audience
        self._key = signing_key_pem

    async def call(
        self,
        person: PersonClaims,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout_seconds: float | None = None,
    ) -> Answer:
        """One request as `person`; `ApiProblemError` for a 4xx/5xx answer.
        `timeout_seconds` replaces the client's timeout for a call known to take longer."""
        token = issue_person_token(self._key, person, self._audience)
        sent = {"Authorization": f"Bearer {token}", **(headers or {})}
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            response = await self._client.request(
                method,
                path,
                json=json,
                params=clean,
                headers=sent,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout_seconds is None else timeout_seconds,
            )
        except httpx.TransportError:
            raise ServiceUnavailableError(self.name) from None
        if response.status_code in (502, 503, 504):
            raise ServiceUnavailableError(self.name)
        content_type = response.headers.get("content-type", "")
        data: Any = response.json() if "json" in content_type else response.text
        if response.status_code >= 400:
            body = data if isinstance(data, dict) else {}
            raise ApiProblemError(
                response.status_code,
                str(body.get("title", "Error")),
                body.get("detail"),
                [
                    FieldProblem(
                        str(e.get("field", "")), str(e.get("message", "")), str(e.get("type", ""))
                    )
                    for e in body.get("errors", [])
                    if isinstance(e, dict)
                ],
                body,
            )
        return Answer(response.status_code, data, response.headers)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def service_client(
    name: str, base_url: str, audience: str, signing_key_pem: str, timeout: float
) -> ServiceClient:
    """A client for one service (built at start-up by the composition root)."""
    return ServiceClient(
        name,
        httpx.AsyncClient(base_url=base_url, timeout=timeout),
        audience,
        signing_key_pem,
    )


__all__ = [
    "INTAKE_AUDIENCE",
    "REFERRAL_AUDIENCE",
    "Answer",
    "ApiProblemError",
    "FieldProblem",
    "ServiceClient",
    "ServiceUnavailableError",
    "service_client",
]

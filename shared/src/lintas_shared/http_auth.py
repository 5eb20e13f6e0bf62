"""Who is calling an HTTP API: an organisation's API key (systems) or a person's
short-lived token signed by the console (people). Each service looks the caller up in
its own directory; what they share is how the credentials are read and refused."""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from lintas_shared.http_guard import mark_authenticated
from lintas_shared.person_tokens import PersonClaims, PersonTokenError, PersonTokenVerifier


def api_key_scheme(description: str) -> APIKeyHeader:
    """The `X-API-Key` header, as OpenAPI's `ApiKey` scheme (checked by the service)."""
    return APIKeyHeader(
        name="X-API-Key", scheme_name="ApiKey", description=description, auto_error=False
    )


def person_token_scheme(description: str) -> HTTPBearer:
    """`Authorization: Bearer <token>`, as OpenAPI's `PersonToken` scheme."""
    return HTTPBearer(
        scheme_name="PersonToken", bearerFormat="JWT", description=description, auto_error=False
    )


def unauthorised(detail: str, challenge: str) -> HTTPException:
    """401 with the scheme the caller should use (`ApiKey` or `Bearer`)."""
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


def person_claims(request: Request, bearer: HTTPAuthorizationCredentials) -> PersonClaims:
    """The verified claims of a console token, or 401: a bad, expired or foreign token,
    or a service given no console key (`app.state.person_tokens` is None)."""
    verifier: PersonTokenVerifier | None = request.app.state.person_tokens
    if verifier is None:
        raise unauthorised("Person tokens are not accepted here; use an X-API-Key.", "Bearer")
    try:
        return verifier.verify(bearer.credentials)
    except PersonTokenError as exc:
        raise unauthorised(f"The bearer token is refused: {exc}.", "Bearer") from None


def authenticated(request: Request) -> None:
    """Call once the caller's credentials verified: the request guard then limits that
    key per key, not with the requests without credentials from its client address."""
    mark_authenticated(request.scope)

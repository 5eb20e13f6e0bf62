"""Person tokens: how the console tells intake and referral which person is calling.

The console signs a short-lived JWT (EdDSA over Ed25519) for each call it makes on a
signed-in person's behalf: issuer `lintas-console`, audience the service called,
`sub` the person's pseudonymous id, `org` the organisation, `role`, `iat`, `exp`, `jti`.
The services hold only the public key, so they can verify a token but never make one.
Tokens live a minute or two: there is no revocation list, so a verifier refuses any
token meant to live longer than `MAX_LIFETIME`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ISSUER: Final = "lintas-console"
INTAKE_AUDIENCE: Final = "lintas-intake"
REFERRAL_AUDIENCE: Final = "lintas-referral"
ALGORITHM: Final = "EdDSA"
#: The longest lifetime (exp - iat) a verifier accepts.
MAX_LIFETIME: Final = timedelta(seconds=300)
#: Clock difference tolerated between the console and a service.
LEEWAY: Final = timedelta(seconds=10)
_REQUIRED: Final = ("iss", "aud", "sub", "org", "role", "iat", "exp", "jti")

__all__ = [
    "INTAKE_AUDIENCE",
    "ISSUER",
    "LEEWAY",
    "MAX_LIFETIME",
    "REFERRAL_AUDIENCE",
    "PersonClaims",
    "PersonTokenError",
    "PersonTokenVerifier",
    "Role",
    "issue_person_token",
    "new_signing_key",
]


class Role(StrEnum):
    """What a person does in their organisation."""

    CASEWORKER = "caseworker"
    LAWYER = "lawyer"
    PROGRAMME = "programme"
    ORG_ADMIN = "org_admin"
    ADMIN = "admin"


@dataclass(frozen=True)
class PersonClaims:
    """Who is calling: the organisation, the person (a pseudonymous id) and their role."""

    organisation_id: str
    person_id: str
    role: Role


class PersonTokenError(ValueError):
    """A token that must be refused (the message says why, never the token)."""


def new_signing_key() -> tuple[str, str]:
    """A fresh Ed25519 key pair: (private key PEM, PKCS8; public key PEM, SubjectPublicKeyInfo)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def _pem(text: str) -> bytes:
    # An environment file often carries a PEM on one line with literal "\n".
    return text.strip().replace("\\n", "\n").encode()


def issue_person_token(
    private_key_pem: str,
    claims: PersonClaims,
    audience: str,
    *,
    ttl: timedelta = timedelta(seconds=90),
    now: datetime | None = None,
) -> str:
    """A signed token saying `claims` to the service `audience`, valid for `ttl`.

    Verifiers refuse lifetimes over `MAX_LIFETIME`, so keep `ttl` short.
    """
    key = serialization.load_pem_private_key(_pem(private_key_pem), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the console's signing key must be an Ed25519 private key")
    issued = now or datetime.now(UTC)
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "aud": audience,
        "sub": claims.person_id,
        "org": claims.organisation_id,
        "role": claims.role.value,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode(payload, key, algorithm=ALGORITHM)


class PersonTokenVerifier:
    """Checks person tokens meant for one service, with the console's public key."""

    def __init__(self, public_key_pem: str, audience: str) -> None:
        try:
            key = serialization.load_pem_public_key(_pem(public_key_pem))
        except ValueError as exc:
            raise ValueError("the console's public key is not a PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the console's public key must be an Ed25519 public key")
        self._key = key
        self.audience = audience

    def verify(self, token: str, *, now: datetime | None = None) -> PersonClaims:
        """The claims of a valid token; raises PersonTokenError for any other."""
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=ISSUER,
                # Times are checked below, against `now`.
                options={
                    "require": list(_REQUIRED),
                    "strict_aud": True,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise PersonTokenError(f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidAudienceError:
            raise PersonTokenError("the token is meant for another service") from None
        except jwt.InvalidIssuerError:
            raise PersonTokenError("the token is not the console's") from None
        except jwt.InvalidSignatureError:
            raise PersonTokenError("the token's signature does not verify") from None
        except jwt.InvalidTokenError:
            raise PersonTokenError("the token is malformed") from None
        self._check_times(payload, (now or datetime.now(UTC)).timestamp())
        person, organisation, role = payload["sub"], payload["org"], payload["role"]
        if not (isinstance(person, str) and person and isinstance(organisation, str)):
            raise PersonTokenError("the token's subject or organisation is not a string")
        if not organisation:
            raise PersonTokenError("the token's organisation is empty")
        try:
            known_role = Role(role)
        except ValueError:
            raise PersonTokenError("the token's role is not known") from None
        return PersonClaims(organisation_id=organisation, person_id=person, role=known_role)

    @staticmethod
    def _check_times(payload: dict[str, Any], now: float) -> None:
        issued, expires = payload["iat"], payload["exp"]
        numbers = (int, float)
        if not isinstance(issued, numbers) or not isinstance(expires, numbers):
            raise PersonTokenError("the token's iat and exp must be numbers")
        if isinstance(issued, bool) or isinstance(expires, bool):
            raise PersonTokenError("the token's iat and exp must be numbers")
        leeway = LEEWAY.total_seconds()
        if expires <= issued:
            raise PersonTokenError("the token expires before it was issued")
        if expires - issued > MAX_LIFETIME.total_seconds():
            raise PersonTokenError(
                f"the token lives longer than {int(MAX_LIFETIME.total_seconds())} seconds"
            )
        if now > expires + leeway:
            raise PersonTokenError("the token has expired")
        if issued > now + leeway:
            raise PersonTokenError("the token was issued in the future")
        not_before = payload.get("nbf")
        if isinstance(not_before, numbers) and now + leeway < not_before:
            raise PersonTokenError("the token is not valid yet")

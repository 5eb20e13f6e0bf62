"""Person tokens: a good one verifies to its claims; every kind of bad one is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lintas_shared.person_tokens import (
    INTAKE_AUDIENCE,
    REFERRAL_AUDIENCE,
    PersonClaims,
    PersonTokenError,
    PersonTokenVerifier,
    Role,
    issue_person_token,
    new_signing_key,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
CLAIMS = PersonClaims("org-demo-ngo-id", "person-7f3a", Role.CASEWORKER)
PRIVATE, PUBLIC = new_signing_key()


def _verifier(audience: str = INTAKE_AUDIENCE, public: str = PUBLIC) -> PersonTokenVerifier:
    return PersonTokenVerifier(public, audience)


def _raw(private_pem: str = PRIVATE, **changes: Any) -> str:
    """A token with chosen claims (None drops one), signed like the console's."""
    payload: dict[str, Any] = {
        "iss": "lintas-console",
        "aud": INTAKE_AUDIENCE,
        "sub": "person-7f3a",
        "org": "org-demo-ngo-id",
        "role": "caseworker",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 90,
        "jti": "jti-1",
    }
    payload.update(changes)
    payload = {k: v for k, v in payload.items() if v is not None}
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return jwt.encode(payload, key, algorithm="EdDSA")


def test_new_signing_key_gives_pem_pkcs8_and_subject_public_key_info() -> None:
    private, public = new_signing_key()
    assert private.startswith("-----BEGIN PRIVATE KEY-----")
    assert public.startswith("-----BEGIN PUBLIC KEY-----")
    assert new_signing_key()[0] != private


def test_a_good_token_verifies_to_its_claims() -> None:
    for role in Role:
        claims = PersonClaims("org-demo-legal-hk", "person-1", role)
        token = issue_person_token(PRIVATE, claims, REFERRAL_AUDIENCE, now=NOW)
        assert _verifier(REFERRAL_AUDIENCE).verify(token, now=NOW + timedelta(seconds=30)) == claims


def test_an_issued_token_carries_the_documented_claims() -> None:
    token = issue_person_token(PRIVATE, CLAIMS, INTAKE_AUDIENCE, now=NOW)
    header = jwt.get_unverified_header(token)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "EdDSA"
    assert payload["iss"] == "lintas-console"
    assert payload["aud"] == INTAKE_AUDIENCE
    assert (payload["sub"], payload["org"], payload["role"]) == (
        "person-7f3a",
        "org-demo-ngo-id",
        "caseworker",
    )
    assert payload["exp"] - payload["iat"] == 90
    assert payload["jti"]
    again = jwt.decode(
        issue_person_token(PRIVATE, CLAIMS, INTAKE_AUDIENCE, now=NOW),
        options={"verify_signature": False},
    )
    assert again["jti"] != payload["jti"]


def test_a_key_pem_with_escaped_newlines_is_accepted() -> None:
    token = issue_person_token(PRIVATE.replace("\n", "\\n"), CLAIMS, INTAKE_AUDIENCE, now=NOW)
    assert _verifier(public=PUBLIC.replace("\n", "\\n")).verify(token, now=NOW) == CLAIMS


def test_a_token_signed_by_another_key_is_refused() -> None:
    other_private, _ = new_signing_key()
    token = issue_person_token(other_private, CLAIMS, INTAKE_AUDIENCE, now=NOW)
    with pytest.raises(PersonTokenError, match="signature"):
        _verifier().verify(token, now=NOW)


def test_a_tampered_token_is_refused() -> None:
    header, _, signature = issue_person_token(PRIVATE, CLAIMS, INTAKE_AUDIENCE, now=NOW).split(".")
    _, payload, _ = _raw(role="admin").split(".")
    with pytest.raises(PersonTokenError, match="signature"):
        _verifier().verify(f"{header}.{payload}.{signature}", now=NOW)


def test_a_token_for_the_other_service_is_refused() -> None:
    token = issue_person_token(PRIVATE, CLAIMS, REFERRAL_AUDIENCE, now=NOW)
    with pytest.raises(PersonTokenError, match="another service"):
        _verifier(INTAKE_AUDIENCE).verify(token, now=NOW)


def test_a_token_of_another_issuer_is_refused() -> None:
    with pytest.raises(PersonTokenError, match="not the console's"):
        _verifier().verify(_raw(iss="someone-else"), now=NOW)


def test_an_expired_token_is_refused_after_a_small_leeway() -> None:
    token = issue_person_token(PRIVATE, CLAIMS, INTAKE_AUDIENCE, now=NOW)
    expires = NOW + timedelta(seconds=90)
    assert _verifier().verify(token, now=expires + timedelta(seconds=9)) == CLAIMS
    with pytest.raises(PersonTokenError, match="expired"):
        _verifier().verify(token, now=expires + timedelta(seconds=11))


def test_a_token_from_the_future_is_refused() -> None:
    token = issue_person_token(PRIVATE, CLAIMS, INTAKE_AUDIENCE, now=NOW + timedelta(minutes=2))
    with pytest.raises(PersonTokenError, match="future"):
        _verifier().verify(token, now=NOW)


def test_a_token_living_longer_than_five_minutes_is_refused() -> None:
    ok = issue_person_token(PRIVATE, CLAIMS, INTAKE_AUDIENCE, ttl=timedelta(seconds=300), now=NOW)
    assert _verifier().verify(ok, now=NOW) == CLAIMS
    long = issue_person_token(PRIVATE, CLAIMS, INTAKE_AUDIENCE, ttl=timedelta(seconds=301), now=NOW)
    with pytest.raises(PersonTokenError, match="longer than 300 seconds"):
        _verifier().verify(long, now=NOW)


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "org", "role", "iat", "exp", "jti"])
def test_a_token_missing_a_claim_is_refused(claim: str) -> None:
    with pytest.raises(PersonTokenError):
        _verifier().verify(_raw(**{claim: None}), now=NOW)


@pytest.mark.parametrize(
    "changes",
    [
        {"sub": ""},
        {"org": ""},
        {"org": 17},
        {"iat": "yesterday"},
        {"exp": True},
        {"aud": [INTAKE_AUDIENCE, REFERRAL_AUDIENCE]},
    ],
)
def test_a_token_with_a_malformed_claim_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(PersonTokenError):
        _verifier().verify(_raw(**changes), now=NOW)


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(PersonTokenError, match="role"):
        _verifier().verify(_raw(role="superuser"), now=NOW)


def test_an_unsigned_or_garbled_token_is_refused() -> None:
    unsigned = jwt.encode(
        jwt.decode(_raw(), options={"verify_signature": False}), key=None, algorithm="none"
    )
    for token in (unsigned, "not.a.token", "", _raw() + "x"):
        with pytest.raises(PersonTokenError):
            _verifier().verify(token, now=NOW)


def test_a_verifier_needs_an_ed25519_public_key() -> None:
    with pytest.raises(ValueError, match="PEM"):
        PersonTokenVerifier("not a key", INTAKE_AUDIENCE)
    with pytest.raises(ValueError, match="PEM"):
        PersonTokenVerifier(PRIVATE, INTAKE_AUDIENCE)  # the private key is not accepted
    ec_public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ValueError, match="Ed25519"):
        PersonTokenVerifier(ec_public, INTAKE_AUDIENCE)

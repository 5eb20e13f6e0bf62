"""The request guard's pure parts: the per-key token bucket, the JSON nesting check, and
which bucket a person token's requests go to."""

from __future__ import annotations

import json

import httpx
import pytest
from lintas_shared.http_guard import HttpLimits, KeyedRateLimiter, RequestGuard, json_depth_exceeds
from lintas_shared.person_tokens import (
    INTAKE_AUDIENCE,
    PersonClaims,
    PersonTokenVerifier,
    Role,
    issue_person_token,
    new_signing_key,
)
from starlette.responses import PlainTextResponse

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_gets_its_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = KeyedRateLimiter(per_minute=60, burst=3, clock=clock)

    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(1.0)  # one token a second
    clock.now += 0.5
    assert limiter.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def test_one_key_spending_everything_leaves_other_keys_alone() -> None:
    clock = Clock()
    limiter = KeyedRateLimiter(per_minute=60, burst=2, clock=clock)
    for _ in range(1_000):
        limiter.take("flood")

    assert limiter.take("flood") > 0
    assert limiter.take("quiet") == 0.0
    assert limiter.take("quiet") == 0.0


def test_a_bucket_refills_only_up_to_its_burst() -> None:
    clock = Clock()
    limiter = KeyedRateLimiter(per_minute=600, burst=5, clock=clock)
    limiter.take("a")
    clock.now += 3_600

    granted = sum(limiter.take("a") == 0.0 for _ in range(10))

    assert granted == 5


def test_memory_is_bounded_by_forgetting_the_least_recent_keys() -> None:
    clock = Clock()
    limiter = KeyedRateLimiter(per_minute=60, burst=1, max_keys=3, clock=clock)
    limiter.take("old")
    assert limiter.take("old") > 0
    for key in ("b", "c", "d"):
        limiter.take(key)

    # "old" was forgotten, so it starts with a full bucket again.
    assert limiter.take("old") == 0.0
    assert limiter.take("d") > 0  # still remembered


def _nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


@pytest.mark.parametrize(
    ("body", "limit", "expected"),
    [
        (_nested(32), 32, False),
        (_nested(33), 32, True),
        (json.dumps({"a": {"b": {"c": [1, {"d": 2}]}}}).encode(), 5, False),
        (json.dumps({"a": {"b": {"c": [1, {"d": 2}]}}}).encode(), 4, True),
        # Brackets inside strings, escaped quotes included, do not count.
        (json.dumps({"note": "[[[[{{{{" * 50, "q": '\\"[[[['}).encode(), 2, False),
        (_nested(100_000), 32, True),
        # An escaped backslash ends before the quote, which then closes the string.
        (b'{"a": "x\\\\", "b": ' + _nested(3) + b"}", 3, True),
        (b'{"a": "x\\"[[[[", "b": 1}', 3, False),
        # Hostile: an unterminated string of escaped quotes. A regular expression for
        # strings backtracks quadratically on this (minutes at the body limit).
        (b'{"a": "' + b'\\"' * 100_000 + b"[" * 40, 32, False),
    ],
)
def test_json_nesting_depth(body: bytes, limit: int, expected: bool) -> None:
    assert json_depth_exceeds(body, limit) is expected


async def test_person_tokens_are_limited_per_person_and_unverified_ones_per_token() -> None:
    private, public = new_signing_key()
    guard = RequestGuard(
        PlainTextResponse("ok"),
        limits=HttpLimits(rate_per_minute=60, burst=2),
        exempt_paths=frozenset(),
        person_tokens=PersonTokenVerifier(public, INTAKE_AUDIENCE),
    )
    amina = PersonClaims("org-a", "person-amina", Role.CASEWORKER)
    budi = PersonClaims("org-a", "person-budi", Role.CASEWORKER)
    forger, _ = new_signing_key()

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=guard), base_url="http://guarded"
    ) as client:

        async def status(private_key: str, claims: PersonClaims) -> int:
            token = issue_person_token(private_key, claims, INTAKE_AUDIENCE)
            response = await client.get("/v1/cases", headers={"Authorization": f"Bearer {token}"})
            assert token not in response.text
            return response.status_code

        # A new token for every request (as the console signs them): still one bucket.
        assert [await status(private, amina) for _ in range(3)] == [200, 200, 429]
        # Forged tokens naming Budi each get a bucket of their own, not Budi's...
        assert [await status(forger, budi) for _ in range(5)] == [200] * 5
        # ...so Budi still has his whole burst; callers without a key are apart too.
        assert [await status(private, budi) for _ in range(3)] == [200, 200, 429]
        assert (await client.get("/v1/cases")).status_code == 200

"""The request guard's pure parts: the per-key token bucket, the JSON nesting check, and
which bucket a person token's requests go to."""

from __future__ import annotations

import json
import random
import tracemalloc

import httpx
import pytest
from lintas_shared.http_auth import authenticated
from lintas_shared.http_guard import HttpLimits, KeyedRateLimiter, RequestGuard, json_depth_exceeds
from lintas_shared.person_tokens import (
    INTAKE_AUDIENCE,
    PersonClaims,
    PersonTokenVerifier,
    Role,
    issue_person_token,
    new_signing_key,
)
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

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


def test_an_exhausted_key_does_not_start_over_when_new_keys_fill_the_table() -> None:
    clock = Clock()
    limiter = KeyedRateLimiter(per_minute=60, burst=1, max_keys=3, clock=clock)
    limiter.take("old")
    assert limiter.take("old") > 0
    for key in ("b", "c", "d", "e", "f"):  # an attacker cycling keys
        limiter.take(key)

    # "old" is still remembered as empty: it does not get a full bucket back.
    assert limiter.take("old") == pytest.approx(1.0)
    assert len(limiter) <= 3
    # While every bucket kept is still refilling, a new key waits for the oldest...
    assert limiter.take("g") > 0
    # ...and once they have refilled (so forgetting them changes nothing) it gets in.
    clock.now += 1.0
    assert limiter.take("g") == 0.0
    assert len(limiter) <= 3
    assert limiter.take("g") > 0  # and is counted from then on


def test_only_full_buckets_are_forgotten() -> None:
    clock = Clock()
    limiter = KeyedRateLimiter(per_minute=60, burst=2, max_keys=2, clock=clock)
    limiter.take("idle")  # one of two tokens left
    clock.now += 5.0  # refilled long since
    assert [limiter.take("busy") for _ in range(3)][-1] > 0

    assert limiter.take("new") == 0.0  # "idle" was full: forgotten in its place
    assert limiter.take("busy") > 0  # "busy" was not


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
        # Python's JSON reader takes UTF-16 and UTF-32 too: "∀" is 0x22 0x00 in UTF-16-LE,
        # a quote byte that is no quote.
        (("[" + '"∀", ' * 3 + "[" * 40 + "]" * 41).encode("utf-16-le"), 32, True),
        (("[" + '"∀", ' * 3 + "[" * 30 + "]" * 31).encode("utf-16-le"), 32, False),
        (("[" + "[" * 40 + "]" * 41).encode("utf-32"), 32, True),
    ],
)
def test_json_nesting_depth(body: bytes, limit: int, expected: bool) -> None:
    assert json_depth_exceeds(body, limit) is expected


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


def _random_json(rnd: random.Random, level: int) -> object:
    """Values whose strings are full of brackets, quotes and backslashes."""
    draw = rnd.random()
    if level > 6 or draw < 0.3:
        return "".join(rnd.choice('[]{}"\\ab\n') for _ in range(rnd.randint(0, 8)))
    if draw < 0.65:
        return [_random_json(rnd, level + 1) for _ in range(rnd.randint(0, 3))]
    return {
        str(_random_json(rnd, 7)): _random_json(rnd, level + 1) for _ in range(rnd.randint(0, 3))
    }


def test_json_nesting_depth_is_what_a_json_reader_finds() -> None:
    rnd = random.Random(20261205)
    values = [_random_json(rnd, 0) for _ in range(3000)]
    # Each alone, and all in one body far longer than the check takes at a time.
    for value in [*values, values]:
        body = json.dumps(value).encode()
        depth = _depth(value)
        for limit in range(max(depth - 2, 0), depth + 2):
            assert json_depth_exceeds(body, limit) is (depth > limit), (body, limit)


def test_json_nesting_check_takes_memory_in_proportion_to_the_body() -> None:
    # One quote after another: a split on quotes made an object of each (45 MB at 1 MB).
    body = b"[]" * 40 + b'"' * 1_000_000
    tracemalloc.start()
    try:
        assert json_depth_exceeds(body, 32) is False
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(body)


async def test_person_tokens_are_limited_per_person_and_unverified_ones_per_address() -> None:
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
        # Forged tokens naming Budi go to the address's bucket, not Budi's...
        assert [await status(forger, budi) for _ in range(5)] == [200] * 5
        # ...so Budi still has his whole burst; a caller without a key shares the address's.
        assert [await status(private, budi) for _ in range(3)] == [200, 200, 429]
        assert (await client.get("/v1/cases")).status_code == 200


class KeyCheckingApp:
    """A route behind the guard that accepts one API key (as the services' key lookup
    does) and counts how often it had to look a key up."""

    def __init__(self, valid_key: str) -> None:
        self.valid_key = valid_key
        self.lookups = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        self.lookups += 1
        if request.headers.get("x-api-key") == self.valid_key:
            authenticated(request)
            response: PlainTextResponse = PlainTextResponse("ok")
        else:
            response = PlainTextResponse("who are you", status_code=401)
        await response(scope, receive, send)


def _guarded(app: ASGIApp, clock: Clock, **limits: int) -> RequestGuard:
    return RequestGuard(
        app,
        limits=HttpLimits(
            rate_per_minute=600,
            burst=100,
            unauthenticated_rate_per_minute=60,
            unauthenticated_burst=3,
            **limits,
        ),
        exempt_paths=frozenset(),
        clock=clock,
    )


def _client(app: ASGIApp, address: str = "203.0.113.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40_000))
    return httpx.AsyncClient(transport=transport, base_url="http://guarded")


async def test_made_up_keys_share_their_address_bucket_and_are_refused_before_the_lookup() -> None:
    clock = Clock()
    route = KeyCheckingApp("the-real-key")
    guard = _guarded(route, clock)
    async with _client(guard) as attacker, _client(guard, "198.51.100.2") as elsewhere:
        assert (await attacker.get("/", headers={"X-API-Key": "the-real-key"})).status_code == 200

        statuses = [
            (await attacker.get("/", headers={"X-API-Key": f"guess-{n}"})).status_code
            for n in range(10)
        ]
        refused = await attacker.get("/", headers={"X-API-Key": "guess-10"})

        # Every guess is a new key, but they come from one address: its burst of 3 (the
        # real key's first request, before the route accepted it, took one), then 429.
        assert statuses == [401] * 2 + [429] * 8
        assert route.lookups == 1 + 2  # the refused ones never reached the key lookup
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "without valid credentials" in refused.json()["detail"]
        # No credentials, or a bearer token that does not verify: the same bucket.
        assert (await attacker.get("/")).status_code == 429
        bearer = {"Authorization": "Bearer not-a-token"}
        assert (await attacker.get("/", headers=bearer)).status_code == 429
        # The key the route accepted keeps its own bucket; other addresses are untouched.
        assert (await attacker.get("/", headers={"X-API-Key": "the-real-key"})).status_code == 200
        assert (await elsewhere.get("/", headers={"X-API-Key": "guess-11"})).status_code == 401

        clock.now += 1.0  # one request a second refills
        assert (await attacker.get("/", headers={"X-API-Key": "guess-12"})).status_code == 401
        assert (await attacker.get("/", headers={"X-API-Key": "guess-13"})).status_code == 429


async def test_a_key_answered_401_is_counted_by_address_again() -> None:
    clock = Clock()
    route = KeyCheckingApp("key-soon-revoked")
    guard = _guarded(route, clock)
    async with _client(guard) as client:
        key = {"X-API-Key": "key-soon-revoked"}
        assert (await client.get("/", headers=key)).status_code == 200
        route.valid_key = "another"  # revoked
        statuses = [(await client.get("/", headers=key)).status_code for _ in range(5)]

    # The first 401 (still in the key's own bucket) forgets the key: from then on it
    # counts against the address, whose burst of 3 its very first request began.
    assert statuses == [401] * 3 + [429] * 2


@pytest.mark.parametrize(
    "content_type", ["text/plain", None, "application/x-www-form-urlencoded", "application/json"]
)
async def test_deep_nesting_is_refused_whatever_the_content_type(content_type: str | None) -> None:
    seen: list[bytes] = []

    async def parse_anyway(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await Request(scope, receive).body())
        await PlainTextResponse("parsed")(scope, receive, send)

    guard = _guarded(parse_anyway, Clock())
    headers = {"Content-Type": content_type} if content_type else {}
    async with _client(guard) as client:
        response = await client.post("/", content=_nested(10_000), headers=headers)
        shallow = await client.post("/", content=b'{"a": [1, 2]}', headers=headers)

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "nest" in response.json()["detail"]
    assert shallow.status_code == 200
    assert seen == [b'{"a": [1, 2]}']

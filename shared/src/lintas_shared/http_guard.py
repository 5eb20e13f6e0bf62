"""The guard in front of every service's HTTP API, against hostile or broken clients.

Before a request reaches a route:
- **rate**: a token bucket per API key (`X-API-Key`, or a provider's
  `X-Lintas-Provider-Token`) the service has accepted before, and per person for a
  console person token that verifies (`Authorization: Bearer`). Every other request
  (no credentials, a key not yet accepted, made up or wrong, a token that does not
  verify) takes a token from its client address's bucket, smaller by default, so
  cycling made-up keys buys no new bucket. An empty bucket answers 429 with
  `Retry-After` before the route (and its key lookup) runs; other keys are untouched.
  A key is accepted when the route says so (`mark_authenticated`) and forgotten when
  it answers 401. The buckets live in each instance (N instances allow N times the
  rate; a shared limit belongs in the load balancer or a shared store);
- **size**: 413 for a declared `Content-Length` over the limit, and for a streamed
  (chunked) body as soon as it passes the limit, so nothing large is ever buffered;
- **slow bodies**: 408 when the whole body has not arrived within the body timeout, so a
  client dribbling a byte a second does not hold a request open for ever;
- **nesting**: 400 for a body nested deeper than the limit, whatever its declared
  content type (a handler may parse JSON without asking). Python's parser would recurse
  until it fails, which answers 500 and says nothing useful.

Operations routes (`/healthz`, `/readyz`, `/metrics`) pass untouched: probes must never
be rate-limited. Every refusal is a problem-details body naming what was wrong.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from typing import Final

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lintas_shared.person_tokens import PersonTokenError, PersonTokenVerifier
from lintas_shared.problems import problem_response
from lintas_shared.settings import CommonSettings

#: Headers that identify the caller, in the order they are looked for.
KEY_HEADERS: Final = ("x-api-key", "x-lintas-provider-token")
#: Set in the ASGI scope by a route whose caller's credentials verified (see
#: `mark_authenticated`): the guard then counts that key's requests in its own bucket.
AUTHENTICATED: Final = "lintas.authenticated"


@dataclass(frozen=True)
class HttpLimits:
    """What one instance accepts from clients (see `CommonSettings` for each)."""

    rate_per_minute: int = 6_000
    burst: int = 600
    max_body_bytes: int = 256_000
    body_timeout_seconds: float = 30.0
    max_json_depth: int = 32
    unauthenticated_rate_per_minute: int = 1_200
    unauthenticated_burst: int = 300

    @classmethod
    def from_settings(cls, common: CommonSettings) -> HttpLimits:
        """The limits the `LINTAS_HTTP_*` settings ask for."""
        return cls(
            rate_per_minute=common.http_rate_limit_per_minute,
            burst=common.http_rate_limit_burst,
            max_body_bytes=common.http_max_body_bytes,
            body_timeout_seconds=common.http_body_timeout_seconds,
            max_json_depth=common.http_max_json_depth,
            unauthenticated_rate_per_minute=common.http_unauthenticated_rate_limit_per_minute,
            unauthenticated_burst=common.http_unauthenticated_rate_limit_burst,
        )


class KeyedRateLimiter:
    """A token bucket per key: `burst` requests at once, then `per_minute` a minute.

    At most `max_keys` buckets are kept. Only a bucket that has refilled to its burst is
    ever forgotten (least recently used first): a forgotten bucket starts full, so
    forgetting any other would let an exhausted key start over. While every bucket kept
    is still refilling, a new key waits until the oldest has refilled (at most
    `burst` / rate), so a flood of new keys cannot push the others out.
    """

    def __init__(
        self,
        per_minute: int,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(max(burst, 1))
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Spend one token of `key`'s bucket: 0.0 if there was one, else the seconds
        until there will be."""
        now = self._clock()
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            room = self._make_room(now)
            if room > 0:
                return room
            bucket = (self._burst, now)
        tokens, last = bucket
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = self._seconds_for(1.0 - tokens)
        self._buckets[key] = (tokens, now)
        return wait

    def __len__(self) -> int:
        """How many buckets are kept."""
        return len(self._buckets)

    def _seconds_for(self, tokens: float) -> float:
        return tokens / self._rate if self._rate > 0 else math.inf

    def _make_room(self, now: float) -> float:
        """0.0 once a new bucket fits, else the seconds until the oldest has refilled."""
        while len(self._buckets) >= self._max_keys:
            oldest, (tokens, last) = next(iter(self._buckets.items()))
            missing = self._burst - (tokens + (now - last) * self._rate)
            if missing > 0:
                return self._seconds_for(missing)
            del self._buckets[oldest]
        return 0.0


#: Every byte but quotes and brackets (`bytes.translate` deletes them).
_NOT_SIGNIFICANT: Final = bytes(b for b in range(256) if b not in b'"[]{}')
#: What each byte does to the depth: +1 opens, -1 closes.
_DEPTH_STEP: Final = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))
#: Quotes and brackets taken at a time: the pieces of a split stay few, whatever the body.
_CHUNK: Final = 1 << 14


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether `body` (JSON, or anything) nests arrays and objects deeper than `limit`.

    Linear in time and memory whatever the input, and at C speed (a loop over the
    significant bytes in Python was 5% of intake's CPU in an import's batches). Brackets
    inside strings do not count. The escapes go first, paired left to right as a JSON
    reader pairs them (an escaped backslash, then an escaped quote), so every quote left
    opens or closes a string; a backslash outside a string is invalid JSON, refused by
    its reader there. A body in UTF-16 or UTF-32, which Python's JSON reader also takes,
    is read as that reader would read it.
    """
    if body.count(b"[") + body.count(b"{") <= limit:  # in any encoding: never too few
        return False
    encoding = json.detect_encoding(body)
    if encoding != "utf-8":
        try:
            body = body.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")
        except UnicodeError:
            return False  # no JSON reader gets past its first bytes either
    plain = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    significant = plain.translate(None, _NOT_SIGNIFICANT)
    depth, in_string = 0, False
    for start in range(0, len(significant), _CHUNK):
        pieces = significant[start : start + _CHUNK].split(b'"')
        outside = b"".join(pieces[1::2] if in_string else pieces[0::2])
        if outside:
            depths = list(accumulate(map(_DEPTH_STEP.__getitem__, outside), initial=depth))
            if max(depths) > limit:
                return True
            depth = depths[-1]
        in_string ^= len(pieces) % 2 == 0  # an odd number of quotes in the chunk
    return False


class _BodyTooLargeError(Exception):
    pass


class _ClientGoneError(Exception):
    pass


def _digest(value: str) -> str:
    # Bounded memory whatever a client sends, and no key or token kept in clear.
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


@dataclass(frozen=True)
class _Caller:
    """Whose bucket a request could go to."""

    bucket: str  #: the key's, the person's or the token's
    address: str  #: the client address's
    key: str | None  #: `bucket` when it is a key header, which routes may accept
    verified: bool  #: a person token that verified here


def _caller(scope: Scope, headers: Headers, person_tokens: PersonTokenVerifier | None) -> _Caller:
    client = scope.get("client")
    address = "address:" + (str(client[0]) if client else "unknown")
    for name in KEY_HEADERS:
        value = headers.get(name)
        if value:
            key = name + ":" + _digest(value)
            return _Caller(key, address, key, verified=False)
    token = _bearer(headers.get("authorization"))
    if token is not None:
        if person_tokens is not None:
            try:
                claims = person_tokens.verify(token)
            except PersonTokenError:
                pass
            else:
                # Per person, not per token: the console signs a new one every minute
                # or two. Only a verified subject: anyone can write a person's id into a
                # forged token, and must not drain that person's bucket with it.
                person = "person:" + _digest(f"{claims.organisation_id}\x00{claims.person_id}")
                return _Caller(person, address, None, verified=True)
        return _Caller("bearer:" + _digest(token), address, None, verified=False)
    return _Caller(address, address, None, verified=False)


def mark_authenticated(scope: Scope) -> None:
    """Tell the guard that this request's credentials verified (a route calls this once
    its caller is known), so the key's later requests count against its own bucket, not
    its client address's."""
    scope[AUTHENTICATED] = True


class RequestGuard:
    """ASGI middleware applying `HttpLimits` before the app sees a request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: HttpLimits,
        exempt_paths: frozenset[str],
        clock: Callable[[], float] = time.monotonic,
        person_tokens: PersonTokenVerifier | None = None,
        max_accepted_keys: int = 100_000,
    ) -> None:
        self.app = app
        self.limits = limits
        self.exempt_paths = exempt_paths
        self.person_tokens = person_tokens
        self._limiter = (
            KeyedRateLimiter(limits.rate_per_minute, limits.burst, clock=clock)
            if limits.rate_per_minute > 0
            else None
        )
        self._unauthenticated = (
            KeyedRateLimiter(
                limits.unauthenticated_rate_per_minute, limits.unauthenticated_burst, clock=clock
            )
            if limits.unauthenticated_rate_per_minute > 0
            else None
        )
        #: Key buckets a route has accepted, least recently used first (bounded: a key
        #: forgotten here is counted by address until a route accepts it again).
        self._accepted: OrderedDict[str, None] = OrderedDict()
        self._max_accepted = max_accepted_keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        caller = _caller(scope, Headers(scope=scope), self.person_tokens)
        checked = await self._check(scope, receive, caller)
        if not isinstance(checked, bytes):
            await checked(scope, receive, send)
            return
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        scope.pop(AUTHENTICATED, None)  # only the route may say so
        try:
            await self.app(scope, _replay(checked, receive), send_noting_status)
        finally:
            if caller.key is not None:
                self._note_outcome(caller.key, bool(scope.get(AUTHENTICATED)), status)

    def _note_outcome(self, key: str, authenticated: bool, status: int) -> None:
        if authenticated and status != 401:
            self._accepted[key] = None
            self._accepted.move_to_end(key)
            if len(self._accepted) > self._max_accepted:
                self._accepted.popitem(last=False)
        elif status == 401:
            self._accepted.pop(key, None)  # revoked since, or never valid

    def _rate(self, caller: _Caller) -> ASGIApp | None:
        """A 429 if the caller's bucket is empty, else None (a token taken)."""
        limits = self.limits
        trusted = caller.verified or (caller.key is not None and caller.key in self._accepted)
        if trusted or self._unauthenticated is None:
            if self._limiter is None:
                return None
            wait = self._limiter.take(caller.bucket)
            detail = (
                f"This key may make {limits.rate_per_minute} requests a minute "
                f"(bursts of {limits.burst}); retry after the time given."
            )
        else:
            wait = self._unauthenticated.take(caller.address)
            detail = (
                "Requests without valid credentials (none, or a key or token not accepted "
                f"here) may come {limits.unauthenticated_rate_per_minute} a minute from one "
                f"address (bursts of {limits.unauthenticated_burst}); retry after the time "
                "given."
            )
        if wait <= 0:
            return None
        retry = str(max(1, math.ceil(wait))) if math.isfinite(wait) else "3600"
        return _refusal(429, "Too Many Requests", detail, {"Retry-After": retry})

    async def _check(self, scope: Scope, receive: Receive, caller: _Caller) -> bytes | ASGIApp:
        """The body to pass on, or a refusal to answer with."""
        headers = Headers(scope=scope)
        limits = self.limits
        refused = self._rate(caller)
        if refused is not None:
            return refused
        declared = headers.get("content-length")
        if declared is not None and (
            not declared.isdigit() or int(declared) > limits.max_body_bytes
        ):
            return self._too_large()
        try:
            async with asyncio.timeout(limits.body_timeout_seconds):
                body = await self._read_body(receive)
        except _BodyTooLargeError:
            return self._too_large()
        except TimeoutError:
            return _refusal(
                408,
                "Request Timeout",
                f"The request body must arrive within {limits.body_timeout_seconds:g} seconds.",
                {"Connection": "close"},
            )
        except _ClientGoneError:
            # Nobody will read the answer, but the app stack expects one.
            return _refusal(400, "Bad Request", "The client left before sending its body.", {})
        # Whatever the content type: a handler may parse the body as JSON without asking
        # (a form or text body nests nothing, so this costs it nothing).
        if json_depth_exceeds(body, limits.max_json_depth):
            return _refusal(
                400,
                "Bad Request",
                f"Request bodies may nest arrays and objects at most {limits.max_json_depth} "
                "deep (JSON, whatever the content type).",
                {},
            )
        return body

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGoneError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                raise _BodyTooLargeError
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self) -> ASGIApp:
        return _refusal(
            413,
            "Content Too Large",
            f"Request bodies are limited to {self.limits.max_body_bytes} bytes.",
            {"Connection": "close"},
        )


def _refusal(status: int, title: str, detail: str, headers: dict[str, str]) -> ASGIApp:
    return problem_response(status, title, detail, headers=headers)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then listens for disconnect."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay

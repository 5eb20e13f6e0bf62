"""Hostile clients against a real uvicorn server running the services' protocol and
conventions: floods from one key, oversized and streamed bodies, deep nesting, slow
bodies and slow headers. Each must be refused without hurting anyone else.

The app is a minimal one with `install_conventions`, so these run without Kafka or a
store; tests/e2e/test_hostile_input.py checks the same guard is in each real service.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from lintas_shared.http import install_conventions
from lintas_shared.http_auth import authenticated
from lintas_shared.http_guard import HttpLimits
from lintas_shared.http_server import GuardedH11Protocol, header_timeout_seconds

pytestmark = pytest.mark.integration

LIMITS = HttpLimits(
    rate_per_minute=600,
    burst=50,
    max_body_bytes=10_000,
    body_timeout_seconds=1.0,
    unauthenticated_rate_per_minute=600,
    unauthenticated_burst=50,
)
HEADER_TIMEOUT = "1"


class Server:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.bodies_seen = 0
        self.lookups = 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    mp = pytest.MonkeyPatch()
    mp.setenv("LINTAS_HTTP_HEADER_TIMEOUT_SECONDS", HEADER_TIMEOUT)
    header_timeout_seconds.cache_clear()
    running = Server(_free_port())
    app = FastAPI()

    async def ready() -> bool:
        return True

    install_conventions(app, {"always": ready}, LIMITS)

    async def any_key(request: Request) -> None:
        # Stands in for a service's key look-up: the keys `_key` makes are known, any
        # other answers 401 like a key the service does not know.
        key = request.headers.get("x-api-key")
        if key is None:
            return
        running.lookups += 1
        if not key.startswith("known-"):
            raise HTTPException(401, "A valid X-API-Key header is required.")
        authenticated(request)

    @app.get("/v1/ping", dependencies=[Depends(any_key)])
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    @app.post("/v1/echo", dependencies=[Depends(any_key)])
    async def echo(body: dict[str, Any]) -> dict[str, int]:
        running.bodies_seen += 1
        return {"keys": len(body)}

    uv = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=running.port, http=GuardedH11Protocol, log_config=None
        )
    )
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if uv.started:
            break
        time.sleep(0.05)
    assert uv.started
    try:
        yield running
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        mp.undo()
        header_timeout_seconds.cache_clear()


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as c:
        yield c


def _key(name: str) -> dict[str, str]:
    # A fresh key per test: buckets are per key, and tests may run in any order.
    return {"X-API-Key": f"known-{name}-{time.monotonic_ns()}"}


@asynccontextmanager
async def _client_from(server: Server, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client connecting from another loopback address: a bucket of its own."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=server.url, transport=transport, timeout=30) as c:
        yield c


async def test_ten_thousand_requests_from_one_key_are_limited_and_other_keys_are_not(
    client: httpx.AsyncClient,
) -> None:
    flood, quiet = _key("flood"), _key("quiet")
    for key in (flood, quiet):  # accepted once (counted by address), then per key
        assert (await client.get("/v1/ping", headers=key)).status_code == 200
    statuses: list[int] = []
    retry_after: set[str] = set()
    quiet_statuses: list[int] = []
    began = time.monotonic()

    async def flooder(n: int) -> None:
        for _ in range(n):
            response = await client.get("/v1/ping", headers=flood)
            statuses.append(response.status_code)
            if response.status_code == 429:
                retry_after.add(response.headers["retry-after"])
                assert response.headers["content-type"] == "application/problem+json"

    async def neighbour() -> None:
        for _ in range(40):
            quiet_statuses.append((await client.get("/v1/ping", headers=quiet)).status_code)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(flooder(250) for _ in range(40)), neighbour())
    elapsed = time.monotonic() - began

    assert len(statuses) == 10_000
    accepted = statuses.count(200)
    # The burst, then 10 a second (600 a minute) for as long as the flood lasted.
    assert LIMITS.burst <= accepted <= LIMITS.burst + 10 * elapsed + 1
    assert statuses.count(429) == 10_000 - accepted
    assert retry_after
    assert all(int(value) >= 1 for value in retry_after)
    assert quiet_statuses == [200] * 40


async def test_probes_are_never_limited(server: Server) -> None:
    # No key: the client address is the bucket (an address of its own, so the other
    # tests' keys, counted by address until accepted, keep theirs). Sent until refused
    # (the bucket refills while a slow machine sends, so the count of requests it takes
    # is not fixed; four times the burst is far more than enough).
    async with _client_from(server, "127.0.0.2") as client:
        for _ in range(LIMITS.unauthenticated_burst * 4):
            if (await client.get("/v1/ping")).status_code == 429:
                break
        else:
            pytest.fail(f"no 429 in {LIMITS.unauthenticated_burst * 4} requests without a key")
        # The probes answer right after the API refused the same client.
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200


async def test_made_up_keys_from_one_address_are_refused_before_the_key_look_up(
    server: Server,
) -> None:
    async with (
        _client_from(server, "127.0.0.3") as attacker,
        _client_from(server, "127.0.0.4") as partner,
    ):
        known = _key("partner")
        assert (await partner.get("/v1/ping", headers=known)).status_code == 200
        lookups = server.lookups
        # A new made-up key each time, until refused (the bucket refills while a slow
        # machine sends, so the count is not fixed; four times the burst is plenty).
        statuses: list[int] = []
        while len(statuses) < LIMITS.unauthenticated_burst * 4 and 429 not in statuses:
            guess = {"X-API-Key": f"guess-{len(statuses)}"}
            refused = await attacker.get("/v1/ping", headers=guess)
            statuses.append(refused.status_code)

        assert statuses[-1] == 429
        assert set(statuses[:-1]) == {401}
        assert len(statuses) - 1 >= LIMITS.unauthenticated_burst
        assert server.lookups - lookups == len(statuses) - 1  # the 429 never reached it
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["content-type"] == "application/problem+json"
        assert "without valid credentials" in refused.json()["detail"]
        # Meanwhile a key accepted before is served, and from its own address.
        assert (await partner.get("/v1/ping", headers=known)).status_code == 200


async def test_bodies_over_the_limit_are_refused_declared_or_streamed(
    client: httpx.AsyncClient, server: Server
) -> None:
    seen = server.bodies_seen
    declared = await client.post(
        "/v1/echo",
        content=b"{}" + b" " * 20_000,
        headers=_key("big") | {"content-type": "application/json"},
    )
    assert declared.status_code == 413
    assert declared.json()["title"] == "Content Too Large"

    # Chunked: no Content-Length to trust; refused once the chunks pass the limit.
    chunk = b"x" * 1_000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20))
    streamed = await _raw_exchange(
        server.port,
        b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nX-API-Key: chunky\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks,
    )
    assert streamed.startswith(b"HTTP/1.1 413")

    # Two megabytes streamed: the server answers and hangs up long before the end, so the
    # client may see the 413 or the connection reset under its feet.
    async def stream() -> AsyncIterator[bytes]:
        for _ in range(2_000):
            yield chunk

    try:
        huge = await client.post(
            "/v1/echo",
            content=stream(),
            headers=_key("huge") | {"content-type": "application/json"},
        )
        assert huge.status_code == 413
    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
        pass

    assert server.bodies_seen == seen  # the app never saw any of them
    ok = await client.post("/v1/echo", json={"a": 1}, headers=_key("small"))
    assert ok.status_code == 200
    assert server.bodies_seen == seen + 1


async def test_deeply_nested_json_is_refused_before_parsing(client: httpx.AsyncClient) -> None:
    headers = _key("nest") | {"content-type": "application/json"}
    at_limit = '{"a": ' + "[" * 31 + "]" * 31 + "}"
    too_deep = '{"a": ' + "[" * 4_000 + "]" * 4_000 + "}"

    allowed = await client.post("/v1/echo", content=at_limit, headers=headers)
    refused = await client.post("/v1/echo", content=too_deep, headers=headers)

    assert allowed.status_code == 200
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/problem+json"
    assert "32 deep" in refused.json()["detail"]


async def _raw_exchange(port: int, sent: bytes) -> bytes:
    """Send `sent`, then read until the server answers and closes, or 30 s pass."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(sent)
        await writer.drain()
        async with asyncio.timeout(30):
            return await reader.read()
    finally:
        writer.close()


async def test_a_slow_body_is_cut_off_while_others_are_served(
    client: httpx.AsyncClient, server: Server
) -> None:
    head = (
        b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nX-API-Key: slow\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":'
    )
    slow = [asyncio.create_task(_raw_exchange(server.port, head)) for _ in range(20)]
    await asyncio.sleep(0.2)

    served = await client.get("/v1/ping", headers=_key("meanwhile"))

    assert served.status_code == 200
    for answer in await asyncio.gather(*slow):
        assert answer.startswith(b"HTTP/1.1 408")
        assert b"within 1 seconds" in answer


async def test_slow_headers_are_cut_off_while_others_are_served(
    client: httpx.AsyncClient, server: Server
) -> None:
    # Slowloris: the request line and part of the head, then nothing more.
    partial = b"GET /v1/ping HTTP/1.1\r\nHost: x\r\nX-Slow: "
    slow = [asyncio.create_task(_raw_exchange(server.port, partial)) for _ in range(50)]
    idle = asyncio.create_task(_raw_exchange(server.port, b""))  # connects, says nothing
    await asyncio.sleep(0.2)

    served = await client.get("/v1/ping", headers=_key("meanwhile"))

    assert served.status_code == 200
    # Closed by the server (an empty read), long before the 30 s the reader would wait.
    assert await asyncio.gather(*slow, idle) == [b""] * 51

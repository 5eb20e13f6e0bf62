"""The load generator's HTTP client against real servers: a scripted asyncio one (for the
answers uvicorn rarely gives) and uvicorn itself, under the services' own protocol."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from lintas_bench.http_client import HttpClientError, LeanHttpClient
from lintas_shared.http_server import GuardedH11Protocol

pytestmark = pytest.mark.unit

Answer = Callable[[int, bytes], bytes]  # (request number, body) -> raw response


def length_answer(status: int, body: bytes, *extra: str) -> bytes:
    head = f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n"
    return (head + "".join(f"{h}\r\n" for h in extra) + "\r\n").encode() + body


@dataclass
class Scripted:
    """A server that answers each request as `answer` says (b"" closes without one)."""

    answer: Answer
    port: int = 0
    connections: int = 0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    open_now: int = 0
    most_open: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                raw = self.answer(len(self.requests), body)
                if raw == b"":
                    break
                writer.write(raw)
                await writer.drain()
                if b"connection: close" in raw.split(b"\r\n\r\n")[0].lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


@asynccontextmanager
async def scripted(answer: Answer) -> AsyncIterator[Scripted]:
    server = Scripted(answer)
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield server


def client(port: int, **kw: float) -> LeanHttpClient:
    return LeanHttpClient(
        f"http://127.0.0.1:{port}",
        headers={"X-API-Key": "k-1", "Content-Type": "application/json"},
        max_connections=int(kw.pop("max_connections", 8)),
        timeout=kw.pop("timeout", 10.0),
    )


async def test_answers_by_length_over_one_kept_alive_connection() -> None:
    numbered: Answer = lambda n, body: length_answer(201, b'{"n": %d}' % n)  # noqa: E731
    async with scripted(numbered) as server, client(server.port) as http:
        answers = [
            await http.post("/v1/cases", b'{"i": %d}' % i, {"Idempotency-Key": f"key-{i}"})
            for i in range(3)
        ]
    assert [(a.status, json.loads(a.body)) for a in answers] == [
        (201, {"n": 1}),
        (201, {"n": 2}),
        (201, {"n": 3}),
    ]
    assert server.connections == 1
    head, body = server.requests[1]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/cases HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}" in lines
    assert {"X-API-Key: k-1", "Idempotency-Key: key-1", "Content-Length: 8"} <= set(lines)
    assert body == b'{"i": 1}'


async def test_a_chunked_answer_is_read_whole_and_the_connection_kept() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\ntrailer: x\r\n\r\n"
    )
    async with scripted(lambda n, body: chunked) as server, client(server.port) as http:
        first = await http.post("/x", b"{}", {})
        second = await http.post("/x", b"{}", {})
    assert (first.status, first.body) == (200, b"abcdefg")
    assert second.body == b"abcdefg"
    assert server.connections == 1


async def test_connection_close_opens_a_new_connection_for_the_next_request() -> None:
    answer = length_answer(503, b"busy", "connection: close")
    async with scripted(lambda n, body: answer) as server, client(server.port) as http:
        statuses = [(await http.post("/x", b"{}", {})).status for _ in range(2)]
    assert statuses == [503, 503]
    assert server.connections == 2


async def test_a_server_closing_without_an_answer_is_an_error_and_nothing_is_sent_again() -> None:
    async with scripted(lambda n, body: b"") as server, client(server.port) as http:
        with pytest.raises(HttpClientError, match="IncompleteReadError"):
            await http.post("/x", b"{}", {})
    assert len(server.requests) == 1


async def test_an_idle_connection_the_server_closed_is_not_used_again() -> None:
    # The server answers, then closes the connection (as uvicorn does after its
    # keep-alive timeout) without saying so in the answer.
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(length_answer(201, b"ok"))
        await writer.drain()
        writer.close()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening, client(port) as http:
        assert (await http.post("/x", b"{}", {})).status == 201
        idle = http._idle[0]
        for _ in range(500):  # until the close reached the client's side
            if idle.reader.at_eof():
                break
            await asyncio.sleep(0.01)
        assert idle.reader.at_eof()
        assert (await http.post("/x", b"{}", {})).status == 201


async def test_requests_in_flight_share_at_most_max_connections() -> None:
    echo: Answer = lambda n, body: length_answer(201, body)  # noqa: E731
    async with scripted(echo) as server, client(server.port, max_connections=3) as http:
        answers = await asyncio.gather(*(http.post("/x", b"%03d" % i, {}) for i in range(20)))
    assert sorted(a.body for a in answers) == [b"%03d" % i for i in range(20)]
    assert server.connections <= 3
    assert server.most_open <= 3


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"HTTP/2 200 OK\r\ncontent-length: 0\r\n\r\n", "status line"),
        (b"HTTP/1.1 20x OK\r\ncontent-length: 0\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "header line"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
    ],
)
async def test_an_answer_it_cannot_read_is_an_error(raw: bytes, message: str) -> None:
    async with scripted(lambda n, body: raw) as server, client(server.port) as http:
        with pytest.raises(HttpClientError, match=message):
            await http.post("/x", b"{}", {})


async def test_a_server_that_does_not_answer_in_time_is_an_error() -> None:
    never = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await never.wait()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening, client(port, timeout=0.2) as http:
        with pytest.raises(HttpClientError, match="TimeoutError"):
            await http.post("/x", b"{}", {})
        never.set()


async def test_posts_to_uvicorn_under_the_services_protocol() -> None:
    app = FastAPI()

    @app.post("/v1/cases")
    async def create(body: dict[str, int]) -> JSONResponse:
        return JSONResponse({"id": f"case-{body['n']}"}, status_code=201)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, http=GuardedH11Protocol, log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(1000):  # uvicorn says when it listens only by this flag
            if server.started:
                break
            await asyncio.sleep(0.01)
        async with client(port) as http:
            created = [await http.post("/v1/cases", b'{"n": %d}' % n, {}) for n in range(3)]
            refused = await http.post("/v1/cases", b'{"n": "x"}', {})
    finally:
        server.should_exit = True
        await serving
        sock.close()
    assert [(a.status, json.loads(a.body)["id"]) for a in created] == [
        (201, "case-0"),
        (201, "case-1"),
        (201, "case-2"),
    ]
    assert refused.status == 422
    assert json.loads(refused.body)["detail"][0]["loc"] == ["body", "n"]

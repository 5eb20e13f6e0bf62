"""A lean HTTP/1.1 client for the load generator: kept-alive connections, nothing else.

The load generator shares the machine's two cores with what it measures, so its own
cost per request is taken from the services'. httpx costs about 1 ms of CPU a request
here, and more as requests pile up: its connection pool looks at every connection and
every waiting request for each request it sends (measured with a toy server answering
after a delay: 1.2 ms a request at 1 in flight, 1.9 at 100, 2.9 at 200). A slow step
made the generator slower still, and the services slower with it. This client keeps
each connection's own reader and writer, takes any idle one, writes the request in one
call and reads the answer by its `Content-Length` (or its chunks), so its cost does not
depend on how many requests are in flight.

It speaks only what the load needs: `POST` with a body, answers with a length or in
chunks. Anything else it cannot read is an `HttpClientError`, never a guess.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

#: The longest status line and headers accepted (uvicorn's answers are far shorter).
_HEAD_LIMIT = 64 * 1024


class HttpClientError(Exception):
    """The server's answer could not be read (closed early, malformed, or too slow)."""


@dataclass(frozen=True)
class HttpAnswer:
    """A response: its status and its body."""

    status: int
    body: bytes


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class LeanHttpClient:
    """`POST`s over kept-alive HTTP/1.1 connections to one server.

    At most `max_connections` connections are open; a request beyond them waits for one
    to come back (the load generator caps its requests in flight at the same number).
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        max_connections: int,
        timeout: float = 60.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"only http:// URLs with a host are supported, got {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        host_header = parts.netloc
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._fixed = f"Host: {host_header}\r\n{self._fixed}"
        self._timeout = timeout
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """Send `body` to `path`; the answer, or `HttpClientError`/`OSError`."""
        if self._closed:
            raise HttpClientError("the client is closed")
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head = (
            f"POST {self._prefix}{path} HTTP/1.1\r\n{self._fixed}{extra}"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        async with self._slots:
            connection = self._take_idle()
            try:
                async with asyncio.timeout(self._timeout):
                    if connection is None:
                        reader, writer = await asyncio.open_connection(
                            self._host, self._port, limit=_HEAD_LIMIT
                        )
                        connection = _Connection(reader, writer)
                    connection.writer.write(head.encode("latin-1") + body)
                    answer, keep = await _read_answer(connection.reader)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                # Never sent again: the server may have stored it (the error is counted).
                if connection is not None:
                    connection.close()
                raise HttpClientError(f"{type(exc).__name__} reading the answer") from exc
            except BaseException:
                if connection is not None:
                    connection.close()
                raise
            if keep and not self._closed:
                self._idle.append(connection)
            else:
                connection.close()
            return answer

    def _take_idle(self) -> _Connection | None:
        """The connection used last (the least likely to have timed out), skipping those
        the server closed while they were idle."""
        while self._idle:
            connection = self._idle.pop()
            if not (connection.reader.at_eof() or connection.writer.is_closing()):
                return connection
            connection.close()
        return None

    async def aclose(self) -> None:
        """Close every idle connection (requests in flight close theirs when done)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        for connection in idle:
            try:
                await connection.writer.wait_closed()
            except OSError:
                pass

    async def __aenter__(self) -> LeanHttpClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[HttpAnswer, bool]:
    """One response from `reader`, and whether its connection may be used again."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise HttpClientError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    status = int(code)
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpClientError(f"malformed header line: {line[:80]!r}")
        fields[name.strip().lower()] = value.strip()
    keep = fields.get("connection", "").lower() != "close" and version != "HTTP/1.0"
    if fields.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunks(reader)
    elif "content-length" in fields:
        length = fields["content-length"]
        if not length.isdigit():
            raise HttpClientError(f"malformed Content-Length: {length[:20]!r}")
        body = await reader.readexactly(int(length))
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        # Delimited by the connection's end: read it all, and never use it again.
        body = await reader.read()
        keep = False
    return HttpAnswer(status, body), keep


async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = (await reader.readuntil(b"\r\n"))[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise HttpClientError(f"malformed chunk size: {size_line[:20]!r}") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers, unused
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise HttpClientError("a chunk did not end with CRLF")

"""The HTTP protocol the services run under uvicorn: its h11 protocol with a deadline on
request headers.

uvicorn waits for a request's headers for ever (its keep-alive timer stops at the first
byte), so a client that sends a header line now and then holds a connection open
indefinitely, and enough such clients exhaust the server's connections (slowloris).
Here each request's head must arrive within `LINTAS_HTTP_HEADER_TIMEOUT_SECONDS` of the
connection opening or of the previous response; otherwise the connection is closed.
The body has its own deadline in `lintas_shared.http_guard`.

Run with `uvicorn --http lintas_shared.http_server:GuardedH11Protocol ...` (UVICORN_HTTP).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Final

from uvicorn.protocols.http.h11_impl import H11Protocol

from lintas_shared.settings import CommonSettings

#: The `--http` value that selects this protocol.
UVICORN_HTTP: Final = "lintas_shared.http_server:GuardedH11Protocol"
#: uvicorn's `--timeout-keep-alive`: how long an idle kept-alive connection stays open.
#: Its default, 5 s, is also how long httpx (the console's, the importer's) reuses one:
#: a request sent on a connection the server is closing at that moment fails with no
#: answer (httpx.ReadError, a few in `make bench` runs, at the start of a step after an
#: idle gap of about that length). Longer than any client's idle reuse, so the client
#: always gives a connection up first; a load balancer's idle timeout (60 s on many) too.
KEEP_ALIVE_SECONDS: Final = 75


@functools.cache
def header_timeout_seconds() -> float:
    """`LINTAS_HTTP_HEADER_TIMEOUT_SECONDS`, read once per process."""
    return CommonSettings().http_header_timeout_seconds


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request head is too slow."""

    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        if self._head_deadline is None and self._awaiting_head():
            self._arm_head_deadline()
        super().data_received(data)
        if not self._awaiting_head():
            self._disarm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _awaiting_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(header_timeout_seconds(), self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self._awaiting_head() and not self.transport.is_closing():
            self.transport.close()

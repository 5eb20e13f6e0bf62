"""One SMPP v3.4 session (ESME side) over TCP, with our own enquire_link keep-alive.

The smpp34 client keeps its session alive by itself, but on timers fixed at 30 s that
its Python API neither exposes nor reports on, and it offers no way to send an
enquire_link. So the session is run here, on asyncio, with smpp34's codec for the
message PDUs (`SubmitSm.encode`, `decode` for `deliver_sm`): framing, sequence numbers,
bind, submit_sm, deliver_sm (answered after our handler ran, so a receipt the handler
could not keep is redelivered by the SMS centre), enquire_link both ways, unbind and
generic_nack.

While bound, an enquire_link goes out every `enquire_link_interval` seconds; if its
response does not come within `response_timeout`, or the socket ends, the session is
closed and `on_close` is called, so the owner can bind again.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import smpp34
from lintas_shared.logging import get_logger

log = get_logger(__name__)

BIND_TRANSMITTER: Final = 0x00000002
SUBMIT_SM: Final = 0x00000004
DELIVER_SM: Final = 0x00000005
UNBIND: Final = 0x00000006
BIND_TRANSCEIVER: Final = 0x00000009
ENQUIRE_LINK: Final = 0x00000015
GENERIC_NACK: Final = 0x80000000
RESPONSE: Final = 0x80000000

ESME_ROK: Final = 0x00000000
ESME_RINVCMDID: Final = 0x00000003
ESME_RSYSERR: Final = 0x00000008

BIND_COMMANDS: Final = {"TRX": BIND_TRANSCEIVER, "TX": BIND_TRANSMITTER}
INTERFACE_VERSION: Final = 0x34
HEADER: Final = struct.Struct(">IIII")  # command_length, command_id, status, sequence
MAX_PDU: Final = 64 * 1024

#: What the session does with an inbound deliver_sm; returns the command_status to answer.
DeliverHandler = Callable[[smpp34.DeliverSm], Awaitable[int]]


class SmppSessionError(Exception):
    """The session cannot carry a request: not bound, closed, or a response never came.

    `written` says whether the request went onto the wire before that (the SMS centre
    may then have acted on it).
    """

    def __init__(self, reason: str, *, written: bool) -> None:
        super().__init__(reason)
        self.written = written


class SmppBindError(Exception):
    """The SMS centre refused the bind, or did not answer it."""


@dataclass(frozen=True)
class Response:
    """A response PDU: its command, status and body."""

    command_id: int
    command_status: int
    body: bytes

    @property
    def message_id(self) -> str:
        """The C-octet string at the start of the body (submit_sm_resp, bind_*_resp)."""
        return self.body.split(b"\x00", 1)[0].decode("ascii", "replace")


def _pdu(command_id: int, sequence: int, body: bytes = b"", status: int = ESME_ROK) -> bytes:
    return HEADER.pack(HEADER.size + len(body), command_id, status, sequence) + body


def _cstring(value: str) -> bytes:
    return value.encode("ascii") + b"\x00"


class SmppSession:
    """A bound session. Build it with `SmppSession.bind`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        response_timeout: float,
        enquire_link_interval: float,
        on_deliver: DeliverHandler,
        on_close: Callable[[SmppSession], None],
    ) -> None:
        self._reader, self._writer = reader, writer
        self._response_timeout = response_timeout
        self._enquire_link_interval = enquire_link_interval
        self._on_deliver = on_deliver
        self._on_close = on_close
        self._sequence = 0
        self._pending: dict[int, asyncio.Future[Response]] = {}
        self._write_lock = asyncio.Lock()
        self._deliveries: asyncio.Queue[tuple[int, smpp34.DeliverSm]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = asyncio.Event()
        #: enquire_link requests answered by the SMS centre on this session.
        self.enquire_links_answered = 0

    @classmethod
    async def bind(
        cls,
        host: str,
        port: int,
        *,
        system_id: str,
        password: str,
        bind_type: str,
        response_timeout: float,
        enquire_link_interval: float,
        on_deliver: DeliverHandler,
        on_close: Callable[[SmppSession], None],
    ) -> SmppSession:
        """Connect, bind, and start reading and keeping the link alive.

        Raises SmppBindError (refused, or no answer in time) or OSError (no connection).
        """
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), timeout=response_timeout
        )
        session = cls(
            reader,
            writer,
            response_timeout=response_timeout,
            enquire_link_interval=enquire_link_interval,
            on_deliver=on_deliver,
            on_close=on_close,
        )
        try:
            await session._bind(system_id, password, BIND_COMMANDS[bind_type])
        except BaseException:
            writer.close()
            raise
        session._start()
        return session

    async def _bind(self, system_id: str, password: str, command_id: int) -> None:
        body = (
            _cstring(system_id)
            + _cstring(password)
            + _cstring("")  # system_type
            + bytes([INTERFACE_VERSION, 0, 0])  # interface_version, addr_ton, addr_npi
            + _cstring("")  # address_range
        )
        sequence = self._next_sequence()
        self._writer.write(_pdu(command_id, sequence, body))
        try:
            await self._writer.drain()
            command, status, answered, _ = await asyncio.wait_for(
                self._read_pdu(), timeout=self._response_timeout
            )
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            raise SmppBindError(f"no bind response: {type(exc).__name__}") from None
        if command != command_id | RESPONSE or answered != sequence:
            raise SmppBindError(f"unexpected answer to bind: command 0x{command:08X}")
        if status != ESME_ROK:
            raise SmppBindError(f"bind refused: command_status 0x{status:08X}")

    def _start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="smpp-read"),
            asyncio.create_task(self._deliver_loop(), name="smpp-deliver"),
            asyncio.create_task(self._keep_alive(), name="smpp-enquire-link"),
        ]

    @property
    def closed(self) -> bool:
        """True once the session ended (dropped, timed out or unbound)."""
        return self._closed.is_set()

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        return self._sequence

    async def _read_pdu(self) -> tuple[int, int, int, bytes]:
        header = await self._reader.readexactly(HEADER.size)
        length, command_id, status, sequence = HEADER.unpack(header)
        if not HEADER.size <= length <= MAX_PDU:
            raise ConnectionError(f"invalid command_length {length}")
        body = await self._reader.readexactly(length - HEADER.size)
        return command_id, status, sequence, header + body

    async def _write(self, pdu: bytes) -> None:
        async with self._write_lock:
            self._writer.write(pdu)
            await self._writer.drain()

    async def request(
        self, command_id: int, body: bytes = b"", pdu: bytes | None = None
    ) -> Response:
        """Send a request (given whole as `pdu`, or as a command and body) and await its
        response. Raises SmppSessionError if none comes in time (the session is then
        closed: a peer that stops answering is treated as gone)."""
        if self.closed:
            raise SmppSessionError("session closed", written=False)
        sequence = self._next_sequence()
        if pdu is None:
            pdu = _pdu(command_id, sequence, body)
        else:
            pdu = pdu[:12] + struct.pack(">I", sequence) + pdu[16:]
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[sequence] = future
        try:
            try:
                await self._write(pdu)
            except (ConnectionError, OSError) as exc:
                self.close(f"write failed: {type(exc).__name__}")
                raise SmppSessionError("write failed", written=False) from None
            try:
                return await asyncio.wait_for(future, self._response_timeout)
            except TimeoutError:
                self.close(f"no response to command 0x{command_id:08X}")
                raise SmppSessionError("no response in time", written=True) from None
            except ConnectionError:
                raise SmppSessionError("connection lost", written=True) from None
        finally:
            self._pending.pop(sequence, None)

    async def submit_sm(self, pdu: smpp34.SubmitSm) -> Response:
        """Submit a message PDU (its sequence number is assigned here)."""
        return await self.request(SUBMIT_SM, pdu=pdu.encode())

    async def enquire_link(self) -> None:
        """One keep-alive round trip; raises SmppSessionError (and closes) without one."""
        response = await self.request(ENQUIRE_LINK)
        if response.command_id == ENQUIRE_LINK | RESPONSE:
            self.enquire_links_answered += 1

    async def _keep_alive(self) -> None:
        while not self.closed:
            await asyncio.sleep(self._enquire_link_interval)
            try:
                await self.enquire_link()
            except SmppSessionError:
                log.warning("smpp enquire_link unanswered; connection treated as dropped")
                return

    async def _read_loop(self) -> None:
        reason = "connection closed by the SMS centre"
        try:
            while True:
                command_id, status, sequence, pdu = await self._read_pdu()
                if command_id & RESPONSE:
                    future = self._pending.get(sequence)
                    if future is not None and not future.done():
                        future.set_result(Response(command_id, status, pdu[HEADER.size :]))
                elif command_id == DELIVER_SM:
                    decoded = smpp34.decode(pdu)
                    if isinstance(decoded, smpp34.DeliverSm):
                        self._deliveries.put_nowait((sequence, decoded))
                elif command_id == ENQUIRE_LINK:
                    await self._write(_pdu(ENQUIRE_LINK | RESPONSE, sequence))
                elif command_id == UNBIND:
                    await self._write(_pdu(UNBIND | RESPONSE, sequence))
                    reason = "unbound by the SMS centre"
                    return
                else:
                    await self._write(_pdu(GENERIC_NACK, sequence, status=ESME_RINVCMDID))
        except (asyncio.IncompleteReadError, ConnectionError, OSError, smpp34.SmppError) as exc:
            reason = f"connection lost: {type(exc).__name__}"
        finally:
            self.close(reason)

    async def _deliver_loop(self) -> None:
        # Apart from the reader, so a slow handler never delays an enquire_link_resp.
        while True:
            sequence, deliver = await self._deliveries.get()
            try:
                status = await self._on_deliver(deliver)
            except Exception as exc:
                log.warning("smpp deliver_sm not handled", error=type(exc).__name__)
                status = ESME_RSYSERR  # the SMS centre delivers it again later
            with contextlib.suppress(ConnectionError, OSError):
                await self._write(_pdu(DELIVER_SM | RESPONSE, sequence, b"\x00", status))

    def close(self, reason: str) -> None:
        """End the session now (no unbind) and tell the owner; idempotent."""
        if self.closed:
            return
        self._closed.set()
        log.info("smpp session ended", reason=reason)
        self._writer.close()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(reason))
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._on_close(self)

    async def unbind(self, wait: float = 2.0) -> None:
        """Say goodbye politely (best effort, waiting at most `wait` seconds for the
        answer, so a hung SMS centre does not hold up a shutdown), then close."""
        if not self.closed:
            with contextlib.suppress(SmppSessionError, TimeoutError):
                await asyncio.wait_for(self.request(UNBIND), min(wait, self._response_timeout))
        self.close("unbound")
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the session's tasks and socket are gone."""
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()

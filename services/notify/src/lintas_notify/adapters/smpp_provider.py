"""The smpp provider: SMPP v3.4 to an operator's SMS centre (through the smpp34 client).

It binds as a transceiver (or transmitter), submits each message with the data_coding
of its encoding and, past one SMS, as concatenated parts with a UDH; the library keeps
the session alive with enquire_link. Delivery receipts arrive as deliver_sm on the same
session and are handed to `on_receipt`. When the connection drops, the session is
forgotten and the next send binds again (the send that found it dead is retried by the
dispatcher, as a transient failure).

SMPP has no idempotency key and no lookup by client reference: `find_sent` cannot tell,
so a crash between the SMSC's submit_sm_resp and our `sent` record can send again. The
README states that window.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from typing import Final

import smpp34

from lintas_notify.domain.message import OutgoingSms
from lintas_notify.domain.smpp_parts import smpp_message
from lintas_notify.ports import ProviderRejectedError, ProviderUnavailableError

ReceiptHandler = Callable[[str, str, str | None], Awaitable[object]]
ESM_CLASS_RECEIPT: Final = 0x04
#: command_status values that mean "try again later" rather than "never".
#: (SMPP v3.4 section 5.1.3: ESME_RSYSERR, ESME_RMSGQFUL, ESME_RTHROTTLED.)
TRANSIENT_STATUSES: Final = frozenset({0x08, 0x14, 0x58})
_RECEIPT: Final = re.compile(r"id:(?P<id>\S+).*?stat:(?P<stat>[A-Z]+)(?:.*?err:(?P<err>\S+))?")
_STATES: Final = {
    "DELIVRD": "delivered",
    "UNDELIV": "failed",
    "REJECTD": "failed",
    "EXPIRED": "failed",
    "DELETED": "failed",
}


def parse_receipt(text: str) -> tuple[str, str, str | None] | None:
    """(message id, delivered/failed/other, error code) from a receipt's text."""
    match = _RECEIPT.search(text)
    if match is None:
        return None
    state = match.group("stat")
    err = match.group("err")
    return (
        match.group("id"),
        _STATES.get(state, state.lower()),
        (None if err in (None, "000") else f"{state} err:{err}"),
    )


class SmppSmsProvider:
    """Sends through an SMSC over SMPP v3.4."""

    name = "smpp"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        system_id: str,
        password: str,
        source_addr: str,
        bind_type: str = "TRX",
        on_receipt: ReceiptHandler | None = None,
    ) -> None:
        self._host, self._port = host, port
        self._system_id, self._password = system_id, password
        self._source = source_addr
        self._bind_type = bind_type
        self.on_receipt = on_receipt
        self._client: smpp34.Client | None = None
        self._smsc: smpp34.Smsc | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._reference = 0
        self.binds = 0

    async def _session(self) -> smpp34.Smsc:
        async with self._lock:
            if self._smsc is not None:
                return self._smsc
            client = smpp34.Client(
                self._host,
                self._port,
                self._system_id,
                self._password,
                bind_type=self._bind_type,
                connect_timeout_ms=5_000,
            )
            try:
                smsc = await client.connect()
            except Exception as exc:
                raise ProviderUnavailableError(
                    f"bind failed: {type(exc).__name__}: {exc}", maybe_accepted=False
                ) from None
            self._client, self._smsc = client, smsc
            self.binds += 1
            self._reader = asyncio.create_task(self._read(smsc), name="smpp-receipts")
            return smsc

    async def _read(self, smsc: smpp34.Smsc) -> None:
        while True:
            event = await smsc.next()
            if isinstance(event, smpp34.Disconnected):
                await self._forget(smsc)
                return
            if event.esm_class & ESM_CLASS_RECEIPT and self.on_receipt is not None:
                parsed = parse_receipt(event.short_message.decode("latin-1"))
                if parsed is not None:
                    await self.on_receipt(*parsed)

    async def _forget(self, smsc: smpp34.Smsc) -> None:
        if self._smsc is smsc:
            self._smsc = None
            client, self._client = self._client, None
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()

    async def send(self, sms: OutgoingSms) -> str:
        """Submit every part; returns the SMSC's id of the last part (whose receipt
        is requested: the message is complete on her phone when it arrives)."""
        smsc = await self._session()
        self._reference = (self._reference + 1) % 256
        message = smpp_message(sms.body, self._reference)
        message_id = ""
        for index, part in enumerate(message.parts):
            last = index == len(message.parts) - 1
            try:
                response = await smsc.submit_sm(
                    sms.to.lstrip("+"),
                    part,
                    source_addr=self._source,
                    source_addr_ton=5,  # alphanumeric sender id
                    dest_addr_ton=1,  # international
                    dest_addr_npi=1,  # E.164
                    esm_class=message.esm_class,
                    data_coding=message.data_coding,
                    registered_delivery=1 if last else 0,
                )
            except Exception as exc:
                # The connection is gone (or the response never came): bind again next
                # time. Parts already accepted may show on her phone; see the README.
                await self._forget(smsc)
                raise ProviderUnavailableError(
                    f"submit_sm failed: {type(exc).__name__}", maybe_accepted=index > 0
                ) from None
            if not response.is_success:
                reason = f"SMPP command_status 0x{response.command_status:08X}"
                if response.command_status in TRANSIENT_STATUSES:
                    raise ProviderUnavailableError(reason, maybe_accepted=index > 0)
                raise ProviderRejectedError(reason)
            message_id = response.message_id or ""
        return message_id

    async def find_sent(self, client_reference: str) -> str | None:
        """SMPP cannot look a message up by our reference."""
        return None

    async def close(self) -> None:
        """Unbind and stop (graceful shutdown)."""
        smsc = self._smsc
        if smsc is not None:
            with contextlib.suppress(Exception):
                await smsc.unbind()
            await self._forget(smsc)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

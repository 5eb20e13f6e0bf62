"""The smpp provider: SMPP v3.4 to an operator's SMS centre.

It binds as a transceiver (or transmitter), submits each message with the data_coding
of its encoding and, past one SMS, as concatenated parts with a UDH (smpp34's codec
encodes the PDUs; `smpp_session` runs the session). While bound it sends enquire_link
every `enquire_link_interval` seconds; a missing enquire_link_resp, like a closed socket,
ends the session, and the provider binds again in the background (with backoff) and on
the next send, so a transceiver is back in time for the receipts the SMS centre holds.
Delivery receipts arrive as deliver_sm on the session and are handed to `on_receipt`
before the deliver_sm is answered.

SMPP has no idempotency key and no lookup by client reference: `find_sent` cannot tell,
so a crash between the SMSC's submit_sm_resp and our `sent` record can send again. The
README states that window.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Collection
from typing import Final

import smpp34
from lintas_shared.logging import get_logger

from lintas_notify.adapters.smpp_session import (
    ESME_ROK,
    SmppBindError,
    SmppSession,
    SmppSessionError,
)
from lintas_notify.domain.message import OutgoingSms
from lintas_notify.domain.smpp_parts import smpp_message
from lintas_notify.ports import ProviderRejectedError, ProviderUnavailableError

log = get_logger(__name__)
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
        enquire_link_interval: float = 30.0,
        response_timeout: float = 10.0,
        rebind_delay: float = 1.0,
        rebind_max_delay: float = 30.0,
    ) -> None:
        self._host, self._port = host, port
        self._system_id, self._password = system_id, password
        self._source = source_addr
        self._bind_type = bind_type
        self.on_receipt = on_receipt
        self._enquire_link_interval = enquire_link_interval
        self._response_timeout = response_timeout
        self._rebind_delay, self._rebind_max_delay = rebind_delay, rebind_max_delay
        self._session: SmppSession | None = None
        self._lock = asyncio.Lock()
        self._rebinder: asyncio.Task[None] | None = None
        self._closing = False
        self._reference = 0
        #: How many times a session was bound (tests and operators).
        self.binds = 0
        #: How many sessions ended other than by our own unbind.
        self.drops = 0

    @property
    def bound(self) -> bool:
        """Whether a session is up now."""
        return self._session is not None and not self._session.closed

    async def _bound_session(self) -> SmppSession:
        async with self._lock:
            if self._session is not None and not self._session.closed:
                return self._session
            if self._closing:
                raise ProviderUnavailableError("the provider is closing", maybe_accepted=False)
            try:
                session = await SmppSession.bind(
                    self._host,
                    self._port,
                    system_id=self._system_id,
                    password=self._password,
                    bind_type=self._bind_type,
                    response_timeout=self._response_timeout,
                    enquire_link_interval=self._enquire_link_interval,
                    on_deliver=self._deliver,
                    on_close=self._dropped,
                )
            except (SmppBindError, OSError, TimeoutError) as exc:
                raise ProviderUnavailableError(
                    f"bind failed: {type(exc).__name__}: {exc}", maybe_accepted=False
                ) from None
            self._session = session
            self.binds += 1
            log.info("smpp bound", bind_type=self._bind_type, binds=self.binds)
            return session

    def _dropped(self, session: SmppSession) -> None:
        """The session ended: forget it and, unless we are closing, bind again soon."""
        if self._session is session:
            self._session = None
        if self._closing:
            return
        self.drops += 1
        self.start()

    def start(self) -> None:
        """Bind in the background (retrying with backoff) until a session is up.

        Called at start-up, so a transceiver receives the receipts the SMS centre kept
        while we were away, and after every drop.
        """
        if self._closing or (self._rebinder is not None and not self._rebinder.done()):
            return
        self._rebinder = asyncio.get_running_loop().create_task(self._rebind(), name="smpp-rebind")

    async def _rebind(self) -> None:
        delay = self._rebind_delay
        while not self._closing and not self.bound:
            try:
                await self._bound_session()
                return
            except ProviderUnavailableError as exc:
                log.warning("smpp bind failed; retrying", reason=exc.reason, wait=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._rebind_max_delay)

    async def _deliver(self, deliver: smpp34.DeliverSm) -> int:
        """A deliver_sm: a receipt goes to `on_receipt` before the SMSC gets its answer."""
        if deliver.esm_class & ESM_CLASS_RECEIPT and self.on_receipt is not None:
            parsed = parse_receipt(deliver.short_message.decode("latin-1"))
            if parsed is not None:
                await self.on_receipt(*parsed)
        return ESME_ROK

    async def send(self, sms: OutgoingSms) -> str:
        """Submit every part; returns the SMSC's id of the last part (whose receipt
        is requested: the message is complete on her phone when it arrives)."""
        session = await self._bound_session()
        self._reference = (self._reference + 1) % 256
        message = smpp_message(sms.body, self._reference)
        message_id = ""
        for index, part in enumerate(message.parts):
            last = index == len(message.parts) - 1
            pdu = smpp34.SubmitSm(
                self._source,
                sms.to.lstrip("+"),
                part,
                source_addr_ton=5,  # alphanumeric sender id
                dest_addr_ton=1,  # international
                dest_addr_npi=1,  # E.164
                esm_class=message.esm_class,
                data_coding=message.data_coding,
                registered_delivery=1 if last else 0,
            )
            try:
                response = await session.submit_sm(pdu)
            except SmppSessionError as exc:
                # The connection is gone (or the response never came): the session is
                # closed and bound again. Parts already accepted may show on her phone,
                # and a submit_sm that went out may have been taken; see the README.
                raise ProviderUnavailableError(
                    f"submit_sm failed: {exc}", maybe_accepted=exc.written or index > 0
                ) from None
            if response.command_status != ESME_ROK:
                reason = f"SMPP command_status 0x{response.command_status:08X}"
                if response.command_status in TRANSIENT_STATUSES:
                    raise ProviderUnavailableError(reason, maybe_accepted=index > 0)
                raise ProviderRejectedError(reason)
            message_id = response.message_id
        return message_id

    async def find_sent(self, client_reference: str) -> str | None:
        """SMPP cannot look a message up by our reference."""
        return None

    async def forget(self, client_references: Collection[str]) -> None:
        """Nothing kept here; the SMSC's own records are under its contract."""

    async def close(self) -> None:
        """Stop rebinding, unbind and stop (graceful shutdown)."""
        self._closing = True
        if self._rebinder is not None:
            self._rebinder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rebinder
        async with self._lock:
            session, self._session = self._session, None
        if session is not None:
            await session.unbind()

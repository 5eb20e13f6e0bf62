"""Notify's use cases: decide which SMS a worker gets, and send each exactly once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from lintas_shared.crypto import CaseKeyMissingError, DataKey
from lintas_shared.envelope import CloudEvent
from lintas_shared.events import CaseSubmitted, SmsSent, make_event, parse_payload
from lintas_shared.ids import deterministic_id
from lintas_shared.values import ConsentPurpose

from lintas_notify.domain.encoding import sms_cost
from lintas_notify.domain.message import OutgoingSms, SmsStatus
from lintas_notify.domain.templates import TemplateCatalogue

SOURCE = "/lintas/notify"
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


class SmsProvider(Protocol):
    """An SMS gateway."""

    name: str

    async def send(self, sms: OutgoingSms) -> str:
        """Hand the message over; returns the provider's message id."""
        ...

    async def find_sent(self, client_reference: str) -> str | None:
        """The provider's id for a message it already accepted under this reference."""
        ...


class CaseKeyReader(Protocol):
    """Reads a case's data key from the vault; raises CaseKeyMissingError after erasure."""

    async def get(self, case_id: str) -> DataKey: ...


class MessageRepository(Protocol):
    """SMS records; claiming one is atomic, so only one attempt ever starts sending it."""

    async def claim(self, sms: OutgoingSms, now: datetime) -> SmsStatus | None:
        """Record the message as `sending`; None if newly claimed, else its existing status."""
        ...

    async def mark_sent(
        self,
        sms: OutgoingSms,
        provider: str,
        provider_message_id: str,
        now: datetime,
        events: Sequence[CloudEvent],
    ) -> None: ...

    async def record_suppressed(self, sms: OutgoingSms, reason: str, now: datetime) -> None: ...


async def send_once(
    sms: OutgoingSms, messages: MessageRepository, provider: SmsProvider, clock: Clock = utc_now
) -> None:
    """Send `sms` unless it was sent before; a redelivered event sends nothing twice."""
    existing = await messages.claim(sms, clock())
    if existing in (SmsStatus.SENT, SmsStatus.SUPPRESSED):
        return
    provider_message_id = None
    if existing is SmsStatus.SENDING:
        # An earlier attempt stopped between the provider and our record: ask before resending.
        provider_message_id = await provider.find_sent(sms.id)
    if provider_message_id is None:
        provider_message_id = await provider.send(sms)
    now = clock()
    sent = SmsSent(
        case_id=sms.case_id,
        message_id=sms.id,
        template=sms.template,
        language=sms.language,
        sent_at=now,
    )
    await messages.mark_sent(
        sms,
        provider.name,
        provider_message_id,
        now,
        [make_event(sent, source=SOURCE, subject=sms.case_id)],
    )


async def on_case_submitted(
    event: CloudEvent,
    messages: MessageRepository,
    provider: SmsProvider,
    catalogue: TemplateCatalogue,
    keys: CaseKeyReader,
    clock: Clock = utc_now,
) -> None:
    """Tell the worker her case was received, with its reference and nothing else."""
    case = parse_payload(event, CaseSubmitted)
    template = "case_received"
    body, language = catalogue.render(
        template, case.worker.preferred_language, reference=case.reference
    )
    cost = sms_cost(body)
    try:
        phone = (await keys.get(case.case_id)).decrypt("worker.phone", case.worker.phone)
        reason = None
    except CaseKeyMissingError:
        phone, reason = "", "case erased: no phone to send to"
    sms = OutgoingSms(
        id=deterministic_id("sms", event.dedupe_key, template),
        case_id=case.case_id,
        case_reference=case.reference,
        to=phone,
        to_sealed=case.worker.phone,
        body=body,
        language=language,
        template=template,
        encoding=cost.encoding,
        segments=cost.segments,
        causing_event=event.dedupe_key,
    )
    if reason is None and ConsentPurpose.SMS_UPDATES not in case.consent.purposes:
        reason = "consent does not cover sms_updates"
    if reason is not None:
        await messages.record_suppressed(sms, reason, clock())
        return
    await send_once(sms, messages, provider, clock)

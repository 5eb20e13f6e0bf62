"""Notify's use cases with fakes: one SMS per event, never a blind resend."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from lintas_notify.domain.message import OutgoingSms, SmsStatus
from lintas_notify.domain.templates import load_catalogue
from lintas_notify.handlers import on_case_submitted
from lintas_shared.envelope import CloudEvent
from lintas_shared.values import ConsentPurpose

from tests.support.fixtures import FakeKeyVault, case_submitted, fixture_key

pytestmark = pytest.mark.unit


class FakeProvider:
    name = "fake"

    def __init__(self) -> None:
        self.sent: list[OutgoingSms] = []

    async def send(self, sms: OutgoingSms) -> str:
        self.sent.append(sms)
        return f"p-{len(self.sent)}"

    async def find_sent(self, client_reference: str) -> str | None:
        for i, sms in enumerate(self.sent, 1):
            if sms.id == client_reference:
                return f"p-{i}"
        return None


class FakeMessages:
    def __init__(self) -> None:
        self.status: dict[str, SmsStatus] = {}
        self.events: list[CloudEvent] = []

    async def claim(self, sms: OutgoingSms, now: datetime) -> SmsStatus | None:
        if sms.id in self.status:
            return self.status[sms.id]
        self.status[sms.id] = SmsStatus.SENDING
        return None

    async def mark_sent(
        self,
        sms: OutgoingSms,
        provider: str,
        provider_message_id: str,
        now: datetime,
        events: Sequence[CloudEvent],
    ) -> None:
        self.status[sms.id] = SmsStatus.SENT
        self.events.extend(events)

    async def record_suppressed(self, sms: OutgoingSms, reason: str, now: datetime) -> None:
        self.status.setdefault(sms.id, SmsStatus.SUPPRESSED)


def clock() -> datetime:
    return datetime(2026, 9, 16, tzinfo=UTC)


CATALOGUE, _ = load_catalogue()


class Vault(FakeKeyVault):
    """Holds the fixture key of every case id used below."""

    def __init__(self) -> None:
        super().__init__()
        for case_id in ("case-1",):
            self.keys[case_id] = fixture_key(case_id)


async def notify(
    event: CloudEvent,
    messages: FakeMessages,
    provider: FakeProvider,
    vault: FakeKeyVault | None = None,
) -> None:
    await on_case_submitted(event, messages, provider, CATALOGUE, vault or Vault(), clock)


async def test_case_received_sms_in_bahasa_with_only_the_reference() -> None:
    provider, messages = FakeProvider(), FakeMessages()
    await notify(case_submitted(reference="LB-7K3Q9"), messages, provider)
    [sms] = provider.sent
    assert sms.to == "+6281234567890"
    assert sms.language == "id"
    assert "LB-7K3Q9" in sms.body
    assert "Kasus Anda sudah kami terima" in sms.body
    assert "HKD" not in sms.body
    assert "12000" not in sms.body
    assert (sms.encoding, sms.segments) == ("GSM-7", 1)
    assert len(messages.events) == 1


async def test_redelivered_event_sends_nothing_twice() -> None:
    provider, messages = FakeProvider(), FakeMessages()
    event = case_submitted()
    for _ in range(3):
        await notify(event, messages, provider)
    assert len(provider.sent) == 1


async def test_crash_after_provider_accepted_is_resolved_without_resending() -> None:
    provider, messages = FakeProvider(), FakeMessages()
    event = case_submitted()
    await notify(event, messages, provider)
    [sms_id] = messages.status
    messages.status[sms_id] = SmsStatus.SENDING  # as if we crashed before recording "sent"
    await notify(event, messages, provider)
    assert len(provider.sent) == 1
    assert messages.status[sms_id] is SmsStatus.SENT


async def test_crash_before_provider_accepted_sends_once() -> None:
    provider, messages = FakeProvider(), FakeMessages()
    event = case_submitted()
    with pytest.raises(ConnectionError):
        await notify(event, messages, ProviderThatCrashes())
    assert list(messages.status.values()) == [SmsStatus.SENDING]
    await notify(event, messages, provider)
    assert len(provider.sent) == 1
    assert list(messages.status.values()) == [SmsStatus.SENT]


class ProviderThatCrashes(FakeProvider):
    async def send(self, sms: OutgoingSms) -> str:
        raise ConnectionError("gateway went away before accepting")


async def test_no_sms_without_consent_for_sms_updates() -> None:
    provider, messages = FakeProvider(), FakeMessages()
    await notify(case_submitted(purposes=(ConsentPurpose.LEGAL_REFERRAL,)), messages, provider)
    assert provider.sent == []
    assert list(messages.status.values()) == [SmsStatus.SUPPRESSED]


async def test_no_sms_once_the_case_is_erased() -> None:
    provider, messages = FakeProvider(), FakeMessages()
    await notify(case_submitted(), messages, provider, FakeKeyVault())  # no key: erased
    assert provider.sent == []
    assert list(messages.status.values()) == [SmsStatus.SUPPRESSED]


async def test_the_stored_recipient_is_sealed() -> None:
    provider, messages = FakeProvider(), FakeMessages()
    await notify(case_submitted(), messages, provider)
    [sms] = provider.sent
    assert sms.to == "+6281234567890"
    assert sms.to_sealed.startswith("enc:v1:")
    assert "6281234567890" not in repr(sms)

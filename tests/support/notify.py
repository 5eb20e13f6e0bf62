"""Test helpers for notify: a settable clock, a recording provider, event builders."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from lintas_notify.adapters.case_profiles import MongoCaseProfiles
from lintas_notify.adapters.early_receipts import MongoEarlyReceipts
from lintas_notify.adapters.message_repository import MongoMessageRepository
from lintas_notify.adapters.preferences import MongoPreferences
from lintas_notify.adapters.reply_budget import MongoReplyBudget
from lintas_notify.dispatch import Dispatcher, RetryBudget, SendRules
from lintas_notify.domain.message import OutgoingSms
from lintas_notify.domain.templates import load_catalogue
from lintas_notify.handlers import NotifyHandlers
from lintas_notify.phones import PhoneLookup
from lintas_notify.ports import ProviderError, SmsProvider
from lintas_notify.receipts import DeliveryReports
from lintas_notify.replies import Conversations
from lintas_shared.crypto import KeyVault
from lintas_shared.envelope import CloudEvent
from lintas_shared.events import (
    CaseClosed,
    CaseErased,
    DeadlineApproaching,
    EventPayload,
    ReferralAccepted,
    ReferralClosed,
    ReferralOffered,
    ReferralProgressed,
    SmsPreferenceChanged,
    make_event,
)
from lintas_shared.key_cache import KeyCache
from lintas_shared.mongo import Document
from pymongo import AsyncMongoClient

from tests.support.fixtures import PHONE_HASH_SECRET


@dataclass
class Clock:
    """A clock a test moves by hand."""

    now: datetime = datetime(2026, 9, 16, 3, 0, tzinfo=UTC)  # 10:00 in Jakarta

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Sleeps:
    """Records the waits the code asked for, without waiting."""

    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class RecordingProvider:
    """A provider that records what it accepted and can be told to fail first."""

    name = "fake"

    def __init__(self, failures: list[ProviderError] | None = None) -> None:
        self.sent: list[OutgoingSms] = []
        self.forgotten: set[str] = set()
        self.failures = list(failures or [])
        self.calls = 0

    async def send(self, sms: OutgoingSms) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(sms)
        return f"fake-{len(self.sent)}"

    async def find_sent(self, client_reference: str) -> str | None:
        for i, sms in enumerate(self.sent, 1):
            if sms.id == client_reference:
                return f"fake-{i}"
        return None

    async def forget(self, client_references: Collection[str]) -> None:
        self.forgotten.update(client_references)


def _event(payload: EventPayload, case_id: str, source: str) -> CloudEvent:
    return make_event(payload, source=source, subject=case_id)


AT = datetime(2026, 9, 16, 2, 0, tzinfo=UTC)
#: Answers to one phone's SMS in an hour, in the notify the tests wire.
REPLY_LIMIT = 5


def referral_offered(case_id: str, at: datetime = AT) -> CloudEvent:
    """The referral service offered the case to a partner."""
    return _event(
        ReferralOffered(
            referral_id=f"ref-{case_id}",
            case_id=case_id,
            partner_organisation_id="org-demo-legal-hk",
            country="HK",
            offered_at=at,
        ),
        case_id,
        "/lintas/referral",
    )


def referral_accepted(case_id: str, country: str = "HK", at: datetime = AT) -> CloudEvent:
    """The partner accepted."""
    return _event(
        ReferralAccepted(
            referral_id=f"ref-{case_id}",
            case_id=case_id,
            partner_organisation_id="org-demo-legal-hk",
            country=country,
            at=at,
        ),
        case_id,
        "/lintas/referral",
    )


def referral_progressed(
    case_id: str, *, documents_needed: bool = True, at: datetime = AT
) -> CloudEvent:
    """The partner reported progress."""
    return _event(
        ReferralProgressed(
            referral_id=f"ref-{case_id}",
            case_id=case_id,
            partner_organisation_id="org-demo-legal-hk",
            country="HK",
            at=at,
            documents_needed=documents_needed,
            filed_at_forum=not documents_needed,
        ),
        case_id,
        "/lintas/referral",
    )


def deadline_approaching(case_id: str, deadline: date = date(2026, 10, 1)) -> CloudEvent:
    """A filing deadline is near."""
    return _event(
        DeadlineApproaching(
            case_id=case_id,
            referral_id=f"ref-{case_id}",
            forum_code="HK-LT",
            deadline=deadline,
            days_before=7,
            verified=True,
        ),
        case_id,
        "/lintas/referral",
    )


def referral_closed(case_id: str, outcome: str = "settled", at: datetime = AT) -> CloudEvent:
    """The partner closed the referral."""
    return _event(
        ReferralClosed(
            referral_id=f"ref-{case_id}",
            case_id=case_id,
            partner_organisation_id="org-demo-legal-hk",
            country="HK",
            at=at,
            outcome=outcome,  # type: ignore[arg-type]
        ),
        case_id,
        "/lintas/referral",
    )


def case_closed(case_id: str, outcome: str = "recovered", at: datetime = AT) -> CloudEvent:
    """The NGO closed the case."""
    return _event(
        CaseClosed(case_id=case_id, outcome=outcome, closed_at=at),  # type: ignore[arg-type]
        case_id,
        "/lintas/intake",
    )


def case_erased(case_id: str, at: datetime = AT) -> CloudEvent:
    """The worker's data was erased."""
    return _event(CaseErased(case_id=case_id, erased_at=at), case_id, "/lintas/intake")


def sms_preference_changed(
    case_id: str, phone_hash: str, opted_out: bool, at: datetime = AT
) -> CloudEvent:
    """The NGO opted the worker out (or in) through intake's API."""
    return _event(
        SmsPreferenceChanged(
            case_id=case_id,
            phone_hash=phone_hash,
            opted_out=opted_out,
            channel="api",
            changed_at=at,
        ),
        case_id,
        "/lintas/intake",
    )


def with_worker(event: CloudEvent, **fields: object) -> CloudEvent:
    """A copy of a `case submitted` event with worker fields replaced (e.g. time_zone)."""
    data = dict(event.data)
    data["worker"] = {**data["worker"], **fields}
    return event.model_copy(update={"data": data})


@dataclass
class Notify:
    """Notify's parts on one test database."""

    handlers: NotifyHandlers
    conversations: Conversations
    dispatcher: Dispatcher
    messages: MongoMessageRepository
    profiles: MongoCaseProfiles
    preferences: MongoPreferences
    vault: KeyVault
    provider: RecordingProvider
    clock: Clock
    sleeps: Sleeps
    database: str
    reports: DeliveryReports
    #: The vault as the services read it (kept a while, as `bootstrap` wires it).
    keys: KeyCache

    def rewire(self, provider: SmsProvider, rules: SendRules | None = None) -> None:
        """Swap the provider (and rules), as a restarted process would have them."""
        self.dispatcher = Dispatcher(
            self.messages,
            self.preferences,
            provider,
            self.keys,
            rules=rules or SendRules(),
            retry=RetryBudget(),
            clock=self.clock,
            sleep=self.sleeps,
            receipts=self.reports,
        )
        self.handlers.dispatcher = self.dispatcher
        self.conversations.dispatcher = self.dispatcher


async def wire_notify(mongo: AsyncMongoClient[Document], database_name: str) -> Notify:
    """Notify's parts on a fresh test database, with a fake provider and clock."""
    db = mongo[database_name]
    clock, sleeps, provider = Clock(), Sleeps(), RecordingProvider()
    messages = MongoMessageRepository(db["messages"])
    profiles = MongoCaseProfiles(db["cases"])
    preferences = MongoPreferences(db["preferences"])
    await messages.ensure_indexes()
    await profiles.ensure_indexes()
    vault = KeyVault(db["case_keys"], "test-master-key")
    keys = KeyCache(vault)
    reports = DeliveryReports(messages, MongoEarlyReceipts(db["early_receipts"]), clock)
    dispatcher = Dispatcher(
        messages, preferences, provider, keys, clock=clock, sleep=sleeps, receipts=reports
    )
    catalogue, _ = load_catalogue("en")
    phones = PhoneLookup(keys, PHONE_HASH_SECRET)
    budget = MongoReplyBudget(db["reply_budget"], limit=REPLY_LIMIT, window=timedelta(hours=1))
    handlers = NotifyHandlers(
        messages, profiles, preferences, dispatcher, catalogue, clock, phones, budget
    )
    conversations = Conversations(
        messages,
        profiles,
        preferences,
        dispatcher,
        catalogue,
        PHONE_HASH_SECRET,
        clock,
        reports,
        budget,
    )
    return Notify(
        handlers,
        conversations,
        dispatcher,
        messages,
        profiles,
        preferences,
        vault,
        provider,
        clock,
        sleeps,
        database_name,
        reports,
        keys,
    )


def outgoing_sms(
    message_id: str,
    reference: str,
    *,
    to: str = "+6281234567890",
    to_sealed: str | None = None,
) -> OutgoingSms:
    """A `case received` SMS for the case `reference`, in Indonesian."""
    return OutgoingSms(
        id=message_id,
        case_id=f"case-{message_id}",
        case_reference=reference,
        to=to,
        to_sealed=to_sealed,
        phone_hash="h",
        body=f"Lintas: Kasus Anda sudah kami terima. Nomor kasus Anda {reference}.",
        language="id",
        template="case_received",
        encoding="GSM-7",
        segments=1,
        causing_event=f"/lintas/intake#{message_id}",
    )

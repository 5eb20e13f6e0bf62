"""The event catalogue: every event type, its topic and its payload.

Payloads carry only what their consumers need, and personal data only as `EncryptedStr`
tokens sealed with the case's own key (see `lintas_shared.crypto`): after erasure they
are unreadable everywhere, Kafka included. Each payload class names its CloudEvents
`type` and its topic, so producers and consumers cannot disagree.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lintas_shared import topics
from lintas_shared.crypto import EncryptedStr
from lintas_shared.envelope import CloudEvent, new_event
from lintas_shared.values import (
    ClaimType,
    ConsentPurpose,
    CountryCode,
    CurrencyCode,
    LanguageCode,
    MoneyValue,
    Sector,
)


class EventPayloadError(ValueError):
    """An event whose type is known but whose data does not match its schema."""


class EventPayload(BaseModel):
    """Base of every event payload."""

    # Consumers ignore fields they do not know, so producers can add fields safely.
    model_config = ConfigDict(frozen=True, extra="ignore")

    TYPE: ClassVar[str]
    TOPIC: ClassVar[str]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


# --- parts ---------------------------------------------------------------------------


class Amount(_Part):
    """An amount in one currency: `lintas_shared.values.Money` as events carry it (a
    consumer ignores fields it does not know here too; the API refuses them)."""

    model_config = ConfigDict(frozen=True, extra="ignore", from_attributes=True)

    currency: CurrencyCode
    value: MoneyValue = Field(description="A decimal string, e.g. '12000.00'; never a number")


class WorkerInfo(_Part):
    """The worker as other services need her: contact (encrypted), language, whereabouts."""

    full_name: EncryptedStr
    phone: EncryptedStr
    phone_hash: str = Field(
        description="HMAC of the E.164 phone keyed by the case's own data key "
        "(`DataKey.keyed_hash('worker.phone', …)`): it tells one phone of the case from "
        "another and links nothing once the case is erased. No service looks phones up "
        "by it; notify keeps its own look-up hash"
    )
    preferred_language: LanguageCode
    current_country: CountryCode
    time_zone: str | None = Field(default=None, description="IANA zone where known")


class EmploymentSummary(_Part):
    """Where and in which sector the worker was employed."""

    country: CountryCode
    sector: Sector
    started_on: date
    ended_on: date | None = None
    employer_name: EncryptedStr | None = None
    placement_agency: EncryptedStr | None = None
    placement_agency_country: CountryCode | None = None


class ClaimSummary(_Part):
    """A claim: routing facts in clear, the free-text description encrypted."""

    type: ClaimType
    amount: Amount | None = Field(default=None, description="Per claimant, not the total")
    arose_on: date | None = None
    claimants: int = Field(default=1, ge=1)
    description: EncryptedStr | None = None


class ConsentSummary(_Part):
    """What one consent record covers, for the consent gate."""

    consent_id: str
    purposes: tuple[ConsentPurpose, ...]
    share_with_countries: tuple[CountryCode, ...] = ()
    share_with_organisations: tuple[str, ...] = ()
    given_at: datetime | None = None


class ForumSummary(_Part):
    """Where a claim is to be filed."""

    code: str
    name: str
    verified: bool


class DeadlineSummary(_Part):
    """By when it must be filed, and on which rule that rests."""

    date: date
    basis: str
    verified: bool


# --- lintas.cases.v1 (intake) ----------------------------------------------------------


class CaseSubmitted(EventPayload):
    """An NGO submitted a new case."""

    TYPE: ClassVar[str] = "org.lintas.case.submitted"
    TOPIC: ClassVar[str] = topics.CASES

    case_id: str
    reference: str
    organisation_id: str
    submitted_at: datetime
    worker: WorkerInfo
    employment: EmploymentSummary
    claims: tuple[ClaimSummary, ...] = Field(min_length=1)
    consent: ConsentSummary


class CaseDetailsCorrected(EventPayload):
    """The NGO corrected a case; the parts given replace what consumers hold."""

    TYPE: ClassVar[str] = "org.lintas.case.details_corrected"
    TOPIC: ClassVar[str] = topics.CASES

    case_id: str
    worker: WorkerInfo | None = None
    employment: EmploymentSummary | None = None
    claims: tuple[ClaimSummary, ...] | None = None
    corrected_at: datetime


class ConsentRecorded(EventPayload):
    """A new consent record was added to a case (routing may resume)."""

    TYPE: ClassVar[str] = "org.lintas.case.consent_recorded"
    TOPIC: ClassVar[str] = topics.CASES

    case_id: str
    consent: ConsentSummary


class ConsentWithdrawn(EventPayload):
    """A consent record was withdrawn (referrals it allowed are withdrawn)."""

    TYPE: ClassVar[str] = "org.lintas.case.consent_withdrawn"
    TOPIC: ClassVar[str] = topics.CASES

    case_id: str
    consent_id: str
    withdrawn_at: datetime


class SmsPreference(EventPayload):
    """A worker's SMS preference as intake and notify announce it: the case and the
    preference only. No phone hash travels (issue #15), so nothing in Kafka links a case
    to a phone once it is erased. The latest `changed_at` wins on both sides."""

    case_id: str
    opted_out: bool
    channel: Literal["api", "sms"]
    changed_at: datetime


class SmsPreferenceChanged(SmsPreference):
    """The NGO opted the worker out of (or back into) SMS through intake's API.

    Intake announces it (channel `api`, source `/lintas/intake`); notify applies it to the
    phone it holds for the case. Records from before notify had a topic for its own
    announcement may also carry channel `sms` and source `/lintas/notify`: intake still
    applies those, and skips its own.
    """

    TYPE: ClassVar[str] = "org.lintas.case.sms_preference_changed"
    TOPIC: ClassVar[str] = topics.CASES

    phone_hash: str | None = Field(
        default=None,
        description="No longer sent (always null) and ignored: notify finds the phone by "
        "the case id. Kept in the schema so that readers of older records still parse them",
    )


class SmsPreferenceTexted(SmsPreference):
    """The worker texted STOP or START (BERHENTI, MULAI) to notify.

    Notify announces it on its own topic, one event per case of her phone, and intake
    shows it on each case. Notify has no write on intake's topic (least privilege), and
    applying either announcement announces nothing, so a change never echoes.
    """

    TYPE: ClassVar[str] = "org.lintas.notification.sms_preference_texted"
    TOPIC: ClassVar[str] = topics.NOTIFICATIONS

    channel: Literal["sms"] = "sms"


class CaseClosed(EventPayload):
    """The NGO closed the case with an outcome."""

    TYPE: ClassVar[str] = "org.lintas.case.closed"
    TOPIC: ClassVar[str] = topics.CASES

    case_id: str
    outcome: Literal["recovered", "settled", "unsuccessful", "withdrawn", "unreachable"]
    amounts_recovered: tuple[Amount, ...] = ()
    closed_at: datetime


class CaseErased(EventPayload):
    """The worker's data was erased: every service drops what it holds for the case."""

    TYPE: ClassVar[str] = "org.lintas.case.erased"
    TOPIC: ClassVar[str] = topics.CASES

    case_id: str
    erased_at: datetime


# --- lintas.referrals.v1 (referral) ----------------------------------------------------

#: The field name a partner's free text is sealed under with the case's data key
#: (`DataKey.encrypt(PARTNER_NOTE_FIELD, text)`), in referral's store and in events.
PARTNER_NOTE_FIELD = "referral.note"

_BY_PERSON = (
    "The pseudonymous id of the person who caused this through the console; null when "
    "a system's API key, the clock or news from another service did"
)


class ReferralOffered(EventPayload):
    """A case was offered to a legal partner."""

    TYPE: ClassVar[str] = "org.lintas.referral.offered"
    TOPIC: ClassVar[str] = topics.REFERRALS

    referral_id: str
    case_id: str
    partner_organisation_id: str
    country: CountryCode
    offered_at: datetime
    forum: ForumSummary | None = None
    deadline: DeadlineSummary | None = None
    content: EncryptedStr | None = Field(
        default=None,
        description="The handoff's shared fields (JSON), sealed for this referral's partner "
        "only; the partner fetches the key from the referral API. Unreadable after erasure.",
    )
    by_person_id: str | None = Field(
        default=None, description=_BY_PERSON + " (set when a lawyer handed the claims on)"
    )


class CaseRoutingBlocked(EventPayload):
    """Routing could not offer a case to anyone; a human must act, and the NGO sees why."""

    TYPE: ClassVar[str] = "org.lintas.referral.routing_blocked"
    TOPIC: ClassVar[str] = topics.REFERRALS

    case_id: str
    status: Literal["awaiting_consent", "unassigned"]
    reason: str


class _ReferralChange(EventPayload):
    referral_id: str
    case_id: str
    partner_organisation_id: str
    country: CountryCode
    at: datetime
    reason: str | None = Field(
        default=None,
        description="Why, in the system's words (not accepted in time, consent withdrawn, "
        "case closed by the NGO): never a partner's text, which travels sealed in `note`. "
        "Records from before `note` existed may carry a decline's reason here in clear",
    )
    by_person_id: str | None = Field(default=None, description=_BY_PERSON)


class ReferralAccepted(_ReferralChange):
    """The partner accepted the referral."""

    TYPE: ClassVar[str] = "org.lintas.referral.accepted"
    TOPIC: ClassVar[str] = topics.REFERRALS


class ReferralDeclined(_ReferralChange):
    """The partner declined; routing offers the next eligible partner."""

    TYPE: ClassVar[str] = "org.lintas.referral.declined"
    TOPIC: ClassVar[str] = topics.REFERRALS

    note: EncryptedStr | None = Field(
        default=None,
        description="The partner's own words on why it declined (free text that may name "
        "the worker), sealed with the case's data key (field `referral.note`): only Lintas "
        "services holding the case key open it, and nobody after erasure. Left out of "
        "webhook deliveries",
    )


class ReferralExpired(_ReferralChange):
    """Nobody answered the offer in time; routing offers the next eligible partner."""

    TYPE: ClassVar[str] = "org.lintas.referral.expired"
    TOPIC: ClassVar[str] = topics.REFERRALS


class ReferralWithdrawn(_ReferralChange):
    """The referral was withdrawn (e.g. consent withdrawn, case closed or erased)."""

    TYPE: ClassVar[str] = "org.lintas.referral.withdrawn"
    TOPIC: ClassVar[str] = topics.REFERRALS


class ReferralProgressed(_ReferralChange):
    """The partner reported progress."""

    TYPE: ClassVar[str] = "org.lintas.referral.progressed"
    TOPIC: ClassVar[str] = topics.REFERRALS

    filed_at_forum: bool = False
    hearing_on: date | None = None
    documents_needed: bool = False


class ReferralClosed(_ReferralChange):
    """The partner closed the referral with an outcome."""

    TYPE: ClassVar[str] = "org.lintas.referral.closed"
    TOPIC: ClassVar[str] = topics.REFERRALS

    outcome: Literal["recovered", "settled", "unsuccessful", "withdrawn", "unreachable"]
    amounts_recovered: tuple[Amount, ...] = ()


class DeadlineApproaching(EventPayload):
    """A filing deadline of an open case is near (30, 7 and 1 days before, by default)."""

    TYPE: ClassVar[str] = "org.lintas.referral.deadline_approaching"
    TOPIC: ClassVar[str] = topics.REFERRALS

    case_id: str
    referral_id: str
    forum_code: str
    deadline: date
    days_before: int
    verified: bool


# --- lintas.notifications.v1 (notify) --------------------------------------------------


class SmsSent(EventPayload):
    """An SMS was handed to the provider. It names the template, never the text."""

    TYPE: ClassVar[str] = "org.lintas.notification.sms_sent"
    TOPIC: ClassVar[str] = topics.NOTIFICATIONS

    case_id: str
    message_id: str
    template: str
    language: LanguageCode
    sent_at: datetime


class SmsDeliveryReported(EventPayload):
    """The provider reported the fate of an SMS."""

    TYPE: ClassVar[str] = "org.lintas.notification.sms_delivery_reported"
    TOPIC: ClassVar[str] = topics.NOTIFICATIONS

    case_id: str
    message_id: str
    status: Literal["delivered", "failed"]
    reported_at: datetime
    reason: str | None = None


EVENT_TYPES: dict[str, type[EventPayload]] = {
    cls.TYPE: cls
    for cls in (
        CaseSubmitted,
        CaseDetailsCorrected,
        ConsentRecorded,
        ConsentWithdrawn,
        SmsPreferenceChanged,
        SmsPreferenceTexted,
        CaseClosed,
        CaseErased,
        ReferralOffered,
        CaseRoutingBlocked,
        ReferralAccepted,
        ReferralDeclined,
        ReferralExpired,
        ReferralWithdrawn,
        ReferralProgressed,
        ReferralClosed,
        DeadlineApproaching,
        SmsSent,
        SmsDeliveryReported,
    )
}

P = TypeVar("P", bound=EventPayload)


def make_event(
    payload: EventPayload,
    *,
    source: str,
    subject: str,
    traceparent: str | None = None,
    event_id: str | None = None,
) -> CloudEvent:
    """Wrap a payload in a new CloudEvent of the payload's type (`event_id`: see
    `new_event`)."""
    return new_event(
        source=source,
        type_=payload.TYPE,
        subject=subject,
        data=payload.model_dump(mode="json"),
        traceparent=traceparent,
        event_id=event_id,
    )


def parse_payload(event: CloudEvent, model: type[P]) -> P:
    """Read an event's data as `model`; raises EventPayloadError naming the bad fields."""
    if event.type != model.TYPE:
        raise EventPayloadError(f"expected event type {model.TYPE!r}, got {event.type!r}")
    try:
        return model.model_validate(event.data)
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) or "<root>" for e in exc.errors())
        raise EventPayloadError(f"invalid {model.TYPE} data: {fields}") from None

"""The event catalogue: every event type, its topic and its payload.

Payloads carry only what their consumers need. Each payload class names its CloudEvents
`type` and its topic, so producers and consumers cannot disagree.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lintas_shared import topics
from lintas_shared.envelope import CloudEvent, new_event
from lintas_shared.values import (
    ClaimType,
    ConsentPurpose,
    CountryCode,
    LanguageCode,
    Money,
    PhoneNumber,
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


class WorkerContact(BaseModel):
    """What notify needs to reach the worker, and routing needs to know where she is."""

    model_config = ConfigDict(frozen=True)

    phone: PhoneNumber
    preferred_language: LanguageCode
    current_country: CountryCode


class EmploymentSummary(BaseModel):
    """Where and in which sector the worker was employed."""

    model_config = ConfigDict(frozen=True)

    country: CountryCode
    sector: Sector
    started_on: date
    ended_on: date | None = None


class ClaimSummary(BaseModel):
    """A claim as routing sees it: no free-text description."""

    model_config = ConfigDict(frozen=True)

    type: ClaimType
    amount: Money | None = None
    arose_on: date | None = None
    claimants: int = Field(default=1, ge=1)


class ConsentSummary(BaseModel):
    """What the worker's consent covers, for the consent gate."""

    model_config = ConfigDict(frozen=True)

    purposes: tuple[ConsentPurpose, ...]
    share_with_countries: tuple[CountryCode, ...] = ()
    share_with_organisations: tuple[str, ...] = ()


class CaseSubmitted(EventPayload):
    """An NGO submitted a new case."""

    TYPE: ClassVar[str] = "org.lintas.case.submitted"
    TOPIC: ClassVar[str] = topics.CASES

    case_id: str
    reference: str
    organisation_id: str
    submitted_at: datetime
    worker: WorkerContact
    employment: EmploymentSummary
    claims: tuple[ClaimSummary, ...] = Field(min_length=1)
    consent: ConsentSummary


class ReferralOffered(EventPayload):
    """A case was offered to a legal partner."""

    TYPE: ClassVar[str] = "org.lintas.referral.offered"
    TOPIC: ClassVar[str] = topics.REFERRALS

    referral_id: str
    case_id: str
    partner_organisation_id: str
    country: CountryCode
    offered_at: datetime


class CaseRoutingBlocked(EventPayload):
    """Routing could not offer a case to anyone; a human must act, and the NGO sees why."""

    TYPE: ClassVar[str] = "org.lintas.referral.routing_blocked"
    TOPIC: ClassVar[str] = topics.REFERRALS

    case_id: str
    status: Literal["awaiting_consent", "unassigned"]
    reason: str


class SmsSent(EventPayload):
    """An SMS was handed to the provider. It names the template, never the text."""

    TYPE: ClassVar[str] = "org.lintas.notification.sms_sent"
    TOPIC: ClassVar[str] = topics.NOTIFICATIONS

    case_id: str
    message_id: str
    template: str
    language: LanguageCode
    sent_at: datetime


EVENT_TYPES: dict[str, type[EventPayload]] = {
    cls.TYPE: cls for cls in (CaseSubmitted, ReferralOffered, CaseRoutingBlocked, SmsSent)
}

P = TypeVar("P", bound=EventPayload)


def make_event(
    payload: EventPayload, *, source: str, subject: str, traceparent: str | None = None
) -> CloudEvent:
    """Wrap a payload in a new CloudEvent of the payload's type."""
    return new_event(
        source=source,
        type_=payload.TYPE,
        subject=subject,
        data=payload.model_dump(mode="json"),
        traceparent=traceparent,
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

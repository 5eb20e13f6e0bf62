"""Request and response bodies of the case API (what OpenAPI documents)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from lintas_shared.values import Money
from pydantic import BaseModel, ConfigDict, Field

from lintas_intake.domain.case import Case, CaseStatus
from lintas_intake.domain.submission import CaseSubmission, Consent


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReferralView(BaseModel):
    """The current handoff."""

    referral_id: str
    partner_organisation_id: str
    country: str
    status: str
    offered_at: datetime
    forum_code: str | None = None
    forum_name: str | None = None
    deadline: str | None = None
    deadline_verified: bool | None = None


class ConsentView(BaseModel):
    """A consent record."""

    id: str
    active: bool
    recorded_at: datetime
    recorded_by: str
    withdrawn_at: datetime | None
    consent: Consent | None


class NoteView(BaseModel):
    """An internal note."""

    id: str
    text: str
    author_organisation_id: str
    at: datetime


class DocumentIn(_In):
    """Metadata of a document; the file itself stays where the NGO holds it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "payslip",
                    "file_name": "payslip-2026-09.pdf",
                    "sha256": "9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f",
                    "size": 182044,
                    "location": "drive://sbmi-hk/LB-7K3Q9/payslip-2026-09.pdf",
                }
            ]
        },
    )

    kind: Literal[
        "identity", "contract", "payslip", "medical", "correspondence", "evidence", "other"
    ]
    file_name: str = Field(min_length=1, max_length=255)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0, le=10**10)
    location: str = Field(
        min_length=1, max_length=500, description="Where the file is held, e.g. a drive path or URL"
    )


class DocumentView(DocumentIn):
    """A recorded document."""

    model_config = ConfigDict(extra="ignore")

    id: str
    recorded_at: datetime


class OutcomeView(BaseModel):
    """How the case ended."""

    outcome: str
    amounts_recovered: list[Money]
    closed_at: datetime
    closed_by: str


class CaseCreated(BaseModel):
    """The answer to a new case."""

    id: str
    reference: str
    external_ref: str
    status: CaseStatus
    submitted_at: datetime


class CaseView(CaseCreated):
    """A case as its NGO sees it (personal data absent once erased)."""

    version: int
    status_reason: str | None
    updated_at: datetime
    referral: ReferralView | None
    outcome: OutcomeView | None
    sms_opted_out: bool
    sms_preference_changed_at: datetime | None = Field(
        description="When the SMS preference last changed (null: never)"
    )
    sms_preference_channel: Literal["api", "sms"] | None = Field(
        description="How: `api` through the NGO, `sms` by the worker texting STOP/START"
    )
    case: CaseSubmission | None
    consents: list[ConsentView]
    notes: list[NoteView]
    documents: list[DocumentView]


class CaseListItem(BaseModel):
    """A case in a list: no personal data."""

    id: str
    reference: str
    external_ref: str
    status: CaseStatus
    submitted_at: datetime
    updated_at: datetime
    employment_country: str | None
    claim_types: list[str]
    deadline: date | None = Field(
        description="The current referral's filing deadline (the nearest one the case has)"
    )
    deadline_verified: bool | None = Field(
        description="Whether a lawyer verified that deadline; null without one"
    )


class CaseList(BaseModel):
    """A page of cases; pass `next_cursor` as `cursor` for the next page."""

    items: list[CaseListItem]
    next_cursor: str | None


class NoteIn(_In):
    """A note."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"text": "Worker called; employer promised to pay by Friday."}]
        },
    )

    text: str = Field(min_length=1, max_length=4000)


class SmsPreferenceIn(_In):
    """Opt the worker out of SMS (or back in), e.g. when two-way SMS is not available."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"opted_out": True}]})

    opted_out: bool


class CloseIn(_In):
    """How the case ended."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "outcome": "settled",
                    "amounts_recovered": [{"currency": "HKD", "value": "12400.00"}],
                }
            ]
        },
    )

    outcome: Literal["recovered", "settled", "unsuccessful", "withdrawn", "unreachable"]
    amounts_recovered: list[Money] = Field(default_factory=list, max_length=20)


class TimelineEntryView(BaseModel):
    """One thing that happened: when, where, who or what, and what."""

    at: datetime
    source: str
    type: str
    actor: str = Field(description="The organisation that acted, or the service")
    summary: str
    person_id: str | None = Field(
        default=None,
        description="The person who acted (a pseudonymous id), when one did through the "
        "console; null for an organisation's API key or a service",
    )


class Timeline(BaseModel):
    """Everything that happened to a case, across services, oldest first."""

    case_id: str
    entries: list[TimelineEntryView]


def case_view(case: Case) -> CaseView:
    """The NGO's view of a case."""
    ref = case.referral
    out = case.outcome
    return CaseView(
        id=case.id,
        reference=case.reference,
        external_ref=case.external_ref,
        status=case.status,
        submitted_at=case.submitted_at,
        version=case.version,
        status_reason=case.status_reason,
        updated_at=case.updated_at,
        referral=None if ref is None else ReferralView.model_validate(ref, from_attributes=True),
        outcome=None
        if out is None
        else OutcomeView(
            outcome=out.outcome,
            closed_at=out.closed_at,
            closed_by=out.closed_by,
            amounts_recovered=[Money(currency=c, value=v) for c, v in out.amounts_recovered],
        ),
        sms_opted_out=case.sms_opted_out,
        sms_preference_changed_at=case.sms_preference_at,
        sms_preference_channel=case.sms_preference_channel,
        case=case.submission,
        consents=[
            ConsentView(
                id=c.id,
                active=c.active,
                recorded_at=c.recorded_at,
                recorded_by=c.recorded_by,
                withdrawn_at=c.withdrawn_at,
                consent=c.consent,
            )
            for c in case.consents
        ],
        notes=[NoteView.model_validate(n, from_attributes=True) for n in case.notes],
        documents=[DocumentView.model_validate(d, from_attributes=True) for d in case.documents],
    )


def example(value: Any, summary: str) -> dict[str, Any]:
    """An OpenAPI example entry."""
    return {"summary": summary, "value": value}

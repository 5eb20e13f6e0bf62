"""The case document an NGO submits, validated field by field."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from lintas_shared.values import (
    ClaimType,
    ConsentPurpose,
    CountryCode,
    LanguageCode,
    Money,
    PhoneNumber,
    Sector,
)
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _not_future(value: date | None, field: str) -> None:
    if value is not None and value > datetime.now(UTC).date():
        raise ValueError(f"{field} is in the future")


class Gender(StrEnum):
    """As the worker describes herself."""

    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNDISCLOSED = "undisclosed"


class ConsentChannel(StrEnum):
    """How consent was given."""

    IN_PERSON = "in_person"
    PHONE = "phone"
    PAPER_FORM = "paper_form"


class Difficulty(StrEnum):
    """One answer of the Washington Group Short Set: how hard the activity is."""

    NONE = "none"
    SOME = "some"
    A_LOT = "a_lot"
    CANNOT_DO = "cannot_do"


class Functioning(_Strict):
    """The Washington Group Short Set on functioning, asked only with the worker's consent.

    Each answer is optional (a question not asked, or not answered, is left out). Sensitive:
    sealed with the other personal fields; the indicators see only `disability` below.
    """

    seeing: Difficulty | None = None
    hearing: Difficulty | None = None
    walking: Difficulty | None = None
    remembering: Difficulty | None = None
    self_care: Difficulty | None = None
    communicating: Difficulty | None = None

    def disability(self) -> str:
        """`yes` (a lot of difficulty, or cannot do, in any domain), `no` (all six
        answered, none of them so), else `unknown` (the Washington Group's cut-off)."""
        answers = [getattr(self, name) for name in type(self).model_fields]
        if any(a in (Difficulty.A_LOT, Difficulty.CANNOT_DO) for a in answers):
            return "yes"
        return "no" if all(a is not None for a in answers) else "unknown"


class Worker(_Strict):
    """The worker. Everything here except language and country is personal data."""

    full_name: str = Field(min_length=1, max_length=200)
    phone: PhoneNumber
    preferred_language: LanguageCode
    date_of_birth: date | None = None
    gender: Gender | None = None
    home_region: str | None = Field(default=None, max_length=200)
    current_country: CountryCode
    passport_number: str | None = Field(default=None, max_length=40)
    functioning: Functioning | None = Field(
        default=None,
        description="Washington Group Short Set answers, only with the worker's consent "
        "(sealed; reports show only disability yes/no/unknown)",
    )

    @model_validator(mode="after")
    def _dates(self) -> Worker:
        _not_future(self.date_of_birth, "date_of_birth")
        return self


class Employment(_Strict):
    """The employment the claims arise from."""

    country: CountryCode
    sector: Sector
    employer_name: str | None = Field(default=None, max_length=200)
    placement_agency: str | None = Field(default=None, max_length=200)
    placement_agency_country: CountryCode | None = Field(
        default=None,
        description="Where the placement agency that charged the fees is licensed (ISO "
        "3166-1 alpha-2); routes an overcharging claim to that country's regulator",
    )
    started_on: date
    ended_on: date | None = None

    @model_validator(mode="after")
    def _dates(self) -> Employment:
        _not_future(self.started_on, "started_on")
        _not_future(self.ended_on, "ended_on")
        if self.ended_on is not None and self.ended_on < self.started_on:
            raise ValueError("ended_on is before started_on")
        return self


class Claim(_Strict):
    """One legal claim."""

    type: ClaimType
    amount: Money | None = Field(
        default=None,
        description="The amount each claimant claims (per claimant, not the total of all "
        "claimants); compared with a forum's per-claimant ceiling",
    )
    arose_on: date | None = None
    claimants: int = Field(default=1, ge=1, le=1000)
    description: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _dates(self) -> Claim:
        _not_future(self.arose_on, "arose_on")
        return self


class Consent(_Strict):
    """The worker's recorded consent (UU 27/2022 Pasal 22, 24, 56; PDPA; PDPO DPP1/DPP3)."""

    text_version: str = Field(min_length=1, max_length=100)
    language: LanguageCode
    given_at: AwareDatetime
    channel: ConsentChannel
    taken_by: str = Field(min_length=1, max_length=100)
    purposes: tuple[ConsentPurpose, ...] = Field(min_length=1)
    share_with_countries: tuple[CountryCode, ...] = ()
    share_with_organisations: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _given_in_past(self) -> Consent:
        if self.given_at > datetime.now(UTC):
            raise ValueError("given_at is in the future")
        return self


class CaseSubmission(_Strict):
    """A new case, exactly as the NGO sends it to `POST /v1/cases`."""

    external_ref: str = Field(
        min_length=1, max_length=100, description="The NGO's own id for the case; unique per NGO."
    )
    worker: Worker
    employment: Employment
    claims: tuple[Claim, ...] = Field(min_length=1, max_length=20)
    consent: Consent

    @field_validator("claims")
    @classmethod
    def _claims_within_employment(
        cls, claims: tuple[Claim, ...], info: ValidationInfo
    ) -> tuple[Claim, ...]:
        """A claim arising more than a year outside the employment is almost surely a typo."""
        employment = info.data.get("employment")
        if not isinstance(employment, Employment):
            return claims  # employment itself is invalid; that error is reported already
        year = timedelta(days=365)
        # Clamped: a date within a year of 0001-01-01 or 9999-12-31 must not overflow (500).
        started, ended = employment.started_on, employment.ended_on or datetime.now(UTC).date()
        earliest = started - year if started > date.min + year else date.min
        latest = ended + year if ended < date.max - year else date.max
        for i, claim in enumerate(claims):
            if claim.arose_on is not None and not earliest <= claim.arose_on <= latest:
                raise PydanticCustomError(
                    "arose_outside_employment",
                    "claims[{index}].arose_on is more than a year outside the employment",
                    {"index": i},
                )
        return claims

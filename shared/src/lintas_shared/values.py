"""Value types that appear in more than one service's contracts.

Each validates itself, so an invalid country, currency, language, phone or amount is
refused with a message naming the problem wherever it enters the system.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated

import phonenumbers
import pycountry
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

_COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries)
_CURRENCIES = frozenset(c.alpha_3 for c in pycountry.currencies)
_LANGUAGES = frozenset(
    lang.alpha_2 for lang in pycountry.languages if getattr(lang, "alpha_2", None)
)
_MONEY = re.compile(r"^\d{1,15}(\.\d{1,2})?$")


def _country(value: str) -> str:
    if value not in _COUNTRIES:
        raise ValueError(f"unknown country code {value!r}: use ISO 3166-1 alpha-2, e.g. 'ID'")
    return value


def _currency(value: str) -> str:
    if value not in _CURRENCIES:
        raise ValueError(f"unknown currency {value!r}: use ISO 4217, e.g. 'HKD'")
    return value


def _language(value: str) -> str:
    if value not in _LANGUAGES:
        raise ValueError(f"unknown language {value!r}: use ISO 639-1, e.g. 'id' or 'en'")
    return value


def _phone(value: str) -> str:
    message = f"phone must be in E.164 form, e.g. '+6281234567890', got {len(value)} characters"
    if not value.startswith("+"):
        raise ValueError(message)
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError(message) from None
    formatted = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if formatted != value or not phonenumbers.is_possible_number(parsed):
        raise ValueError(message)
    return value


def _money(value: object) -> str:
    # Floats are refused: 0.1 + 0.2 is not a sum of money.
    if not isinstance(value, str):
        raise ValueError("money must be a decimal string such as '12000.00', not a number")
    if not _MONEY.match(value):
        raise ValueError(
            "money must be a non-negative decimal string with at most 2 decimal places"
        )
    try:
        Decimal(value)
    except InvalidOperation:
        raise ValueError("money must be a decimal string") from None
    return value


CountryCode = Annotated[str, AfterValidator(_country)]
CurrencyCode = Annotated[str, AfterValidator(_currency)]
LanguageCode = Annotated[str, AfterValidator(_language)]
PhoneNumber = Annotated[str, AfterValidator(_phone)]
MoneyValue = Annotated[str, BeforeValidator(_money)]


class Money(BaseModel):
    """An amount in one currency; the value is a decimal string, never a float."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    currency: CurrencyCode
    value: MoneyValue

    @property
    def amount(self) -> Decimal:
        """The value as a Decimal."""
        return Decimal(self.value)


class ClaimType(StrEnum):
    """Kinds of legal claim a worker can bring."""

    UNPAID_WAGES = "unpaid_wages"
    UNDERPAYMENT = "underpayment"
    ILLEGAL_DEDUCTIONS = "illegal_deductions"
    EXCESS_PLACEMENT_FEES = "excess_placement_fees"
    WRONGFUL_DISMISSAL = "wrongful_dismissal"
    WORK_INJURY = "work_injury"
    ABUSE = "abuse"
    DOCUMENT_RETENTION = "document_retention"
    OTHER = "other"


class Sector(StrEnum):
    """The sector the worker was employed in."""

    DOMESTIC_WORK = "domestic_work"
    CARE_WORK = "care_work"
    CONSTRUCTION = "construction"
    MANUFACTURING = "manufacturing"
    PLANTATION = "plantation"
    FISHING = "fishing"
    OTHER = "other"


class ConsentPurpose(StrEnum):
    """What a worker's consent allows her data to be used for."""

    LEGAL_REFERRAL = "legal_referral"
    SMS_UPDATES = "sms_updates"

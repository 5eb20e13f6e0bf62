"""Value types that appear in more than one service's contracts.

Each validates itself, so an invalid country, currency, language, phone or amount is
refused with a message naming the problem wherever it enters the system; and each says
in its JSON Schema exactly what it accepts (an enum of codes, or a pattern), so that the
OpenAPI documents, generated clients and validators refuse what the server refuses.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated

import phonenumbers
import pycountry
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

_COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries)
_CURRENCIES = frozenset(c.alpha_3 for c in pycountry.currencies)
_LANGUAGES = frozenset(
    lang.alpha_2 for lang in pycountry.languages if getattr(lang, "alpha_2", None)
)
#: Searched as JSON Schema validators do (`re.search`), so the server and the schema agree.
MONEY_PATTERN = r"^[0-9]{1,15}(\.[0-9]{1,2})?$"
_MONEY = re.compile(MONEY_PATTERN)


def _digit_runs(lengths: list[int]) -> str:
    runs: list[tuple[int, int]] = []
    for n in lengths:
        if runs and runs[-1][1] == n - 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return "|".join(
        f"[1-9][0-9]{{{a - 1}}}" if a == b else f"[1-9][0-9]{{{a - 1},{b - 1}}}" for a, b in runs
    )


def _e164_pattern() -> str:
    """E.164 as the phone metadata knows it: `+`, a country calling code, then a national
    number of one of that code's possible lengths, not starting with 0."""
    alternatives = []
    for code, regions in sorted(COUNTRY_CODE_TO_REGION_CODE.items()):
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, regions[0])
        if metadata is None or metadata.general_desc is None:
            continue
        lengths = sorted(
            n
            for n in set(metadata.general_desc.possible_length or ())
            if n >= 2 and len(str(code)) + n <= 15
        )
        if lengths:
            alternatives.append(f"{code}(?:{_digit_runs(lengths)})")
    return r"^\+(?:" + "|".join(alternatives) + ")$"


PHONE_PATTERN = _e164_pattern()
_PHONE = re.compile(PHONE_PATTERN)


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
    if not _PHONE.search(value):
        raise ValueError(message)
    # What the pattern allows is accepted, in its canonical form: a national prefix
    # written after the country code ("+375 8 …") is dropped.
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return value
    formatted = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return formatted if _PHONE.search(formatted) else value


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


CountryCode = Annotated[
    str,
    AfterValidator(_country),
    WithJsonSchema(
        {"type": "string", "enum": sorted(_COUNTRIES), "description": "ISO 3166-1 alpha-2"}
    ),
]
CurrencyCode = Annotated[
    str,
    AfterValidator(_currency),
    WithJsonSchema({"type": "string", "enum": sorted(_CURRENCIES), "description": "ISO 4217"}),
]
LanguageCode = Annotated[
    str,
    AfterValidator(_language),
    WithJsonSchema({"type": "string", "enum": sorted(_LANGUAGES), "description": "ISO 639-1"}),
]
PhoneNumber = Annotated[
    str,
    AfterValidator(_phone),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": PHONE_PATTERN,
            "description": "E.164: '+', a country calling code and a national number of a "
            "length possible there, e.g. '+6281234567890'",
            "examples": ["+6281234567890"],
        }
    ),
]
MoneyValue = Annotated[
    str,
    BeforeValidator(_money),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": MONEY_PATTERN,
            "description": "A non-negative decimal string with at most 2 decimal places",
            "examples": ["12000.00"],
        }
    ),
]


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

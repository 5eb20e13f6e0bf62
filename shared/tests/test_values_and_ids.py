"""Shared value types and identifiers."""

from __future__ import annotations

import pytest
from lintas_shared.ids import REFERENCE_ALPHABET, deterministic_id, new_case_reference
from lintas_shared.values import CountryCode, Money, PhoneNumber
from pydantic import TypeAdapter, ValidationError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("phone", ["+6281234567890", "+85291234567", "+6591234567"])
def test_e164_phones_are_accepted(phone: str) -> None:
    assert TypeAdapter(PhoneNumber).validate_python(phone) == phone


@pytest.mark.parametrize("phone", ["081234567890", "+62 812 3456 7890", "+0", "phone"])
def test_non_e164_phones_are_refused(phone: str) -> None:
    with pytest.raises(ValidationError, match=r"E\.164"):
        TypeAdapter(PhoneNumber).validate_python(phone)


@pytest.mark.parametrize("value", ["12000.00", "0", "15000.5"])
def test_money_is_a_decimal_string(value: str) -> None:
    assert Money(currency="HKD", value=value).value == value


@pytest.mark.parametrize("value", ["-1.00", "1.005", "1e3", 12000.0, "twelve"])
def test_bad_money_is_refused(value: object) -> None:
    with pytest.raises(ValidationError):
        Money(currency="HKD", value=value)  # type: ignore[arg-type]


def test_unknown_country_and_currency_are_refused() -> None:
    with pytest.raises(ValidationError, match="country"):
        TypeAdapter(CountryCode).validate_python("XX")
    with pytest.raises(ValidationError, match="currency"):
        Money(currency="HKX", value="1.00")


def test_case_reference_uses_only_unambiguous_characters() -> None:
    refs = {new_case_reference() for _ in range(500)}
    assert len(refs) > 490
    for ref in refs:
        assert ref.startswith("LB-")
        assert len(ref) == 8
        assert set(ref[3:]) <= set(REFERENCE_ALPHABET)
    assert not set("0O1IL5S8B2Z") & set(REFERENCE_ALPHABET)


def test_deterministic_ids_are_stable_and_distinct() -> None:
    assert deterministic_id("a", "b") == deterministic_id("a", "b")
    assert deterministic_id("a", "b") != deterministic_id("ab")

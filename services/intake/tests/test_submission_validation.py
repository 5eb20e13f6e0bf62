"""The case document: the example is accepted unchanged; bad fields are named."""

from __future__ import annotations

from typing import Any

import pytest
from lintas_intake.domain.submission import CaseSubmission
from lintas_shared.http import validation_errors
from pydantic import ValidationError

from tests.support.fixtures import EXAMPLE_CASE, example_case

pytestmark = pytest.mark.unit


def fields_in_error(doc: dict[str, Any]) -> set[str]:
    with pytest.raises(ValidationError) as info:
        CaseSubmission.model_validate(doc)
    return {e.field for e in validation_errors(info.value.errors())}


def test_the_issue_example_is_accepted_unchanged() -> None:
    submission = CaseSubmission.model_validate(EXAMPLE_CASE)
    assert submission.model_dump(mode="json", exclude_none=True, exclude_defaults=True) == {
        **EXAMPLE_CASE,
        "consent": {**EXAMPLE_CASE["consent"], "given_at": "2026-09-15T09:30:00+07:00"},
    }


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("worker", "phone"), "0812-3456-7890", "worker.phone"),
        (("worker", "current_country"), "XX", "worker.current_country"),
        (("worker", "preferred_language"), "zz", "worker.preferred_language"),
        (("employment", "sector"), "mining", "employment.sector"),
        (("employment", "ended_on"), "2022-01-01", "employment"),
        (("worker", "date_of_birth"), "2999-01-01", "worker"),
    ],
)
def test_bad_field_is_named(path: tuple[str, str], value: str, field: str) -> None:
    doc = example_case()
    doc[path[0]][path[1]] = value
    assert field in fields_in_error(doc)


def test_bad_claim_fields_are_named_with_their_index() -> None:
    doc = example_case()
    doc["claims"][0]["type"] = "theft"
    doc["claims"][0]["amount"] = {"currency": "HKD", "value": "-5"}
    assert {"claims[0].type", "claims[0].amount.value"} <= fields_in_error(doc)


def test_unknown_and_missing_fields_are_named() -> None:
    doc = example_case(surprise=1)
    del doc["consent"]["taken_by"]
    assert {"surprise", "consent.taken_by"} <= fields_in_error(doc)


@pytest.mark.parametrize("arose_on", ["2021-12-31", "2025-09-01"])
def test_claim_arising_more_than_a_year_outside_employment_is_named(arose_on: str) -> None:
    doc = example_case()
    doc["employment"]["ended_on"] = "2024-08-31"
    doc["claims"][0]["arose_on"] = arose_on
    with pytest.raises(ValidationError) as info:
        CaseSubmission.model_validate(doc)
    [error] = validation_errors(info.value.errors())
    assert error.field == "claims"
    assert error.message == "claims[0].arose_on is more than a year outside the employment"


def test_claim_arising_within_a_year_of_employment_is_accepted() -> None:
    doc = example_case()
    doc["claims"][0]["arose_on"] = "2022-03-01"  # eleven months before it started
    assert CaseSubmission.model_validate(doc).claims[0].arose_on is not None

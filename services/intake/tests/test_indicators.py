"""GEDSI indicators: derived worker facts, breakdowns and crossings on a hand-counted
fixture, and small-cell suppression that leaves no hidden cell derivable from a total."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from lintas_intake.domain.indicators import (
    ACCEPTED,
    BREAKDOWNS,
    CaseFacts,
    age_band,
    compute_indicators,
    derive_worker_facts,
    home_province,
    indicators_csv_rows,
    suppress,
)
from lintas_intake.domain.submission import CaseSubmission, Functioning

from tests.support.fixtures import example_case

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def facts(
    gender: str,
    band: str,
    disability: str,
    sector: str,
    country: str,
    province: str,
    *,
    accepted_after_days: float | None = None,
    recovered: tuple[tuple[str, str], ...] = (),
) -> CaseFacts:
    timeline = ()
    if accepted_after_days is not None:
        timeline = ((ACCEPTED, T0 + timedelta(days=accepted_after_days), "accepted"),)
    return CaseFacts(
        organisation_id="org-ngo",
        status="closed" if recovered else "submitted",
        employment_country=country,
        claim_types=("unpaid_wages",),
        submitted_at=T0,
        outcome="recovered" if recovered else None,
        amounts_recovered=recovered,
        timeline=timeline,
        gender=gender,
        age_band=band,
        disability=disability,
        sector=sector,
        home_province=province,
    )


DW, CON = "domestic_work", "construction"
#: 14 cases, counted by hand below.
FIXTURE = [
    # 6: women, 25-34, no disability, domestic work in HK, from Lampung
    facts("female", "25-34", "no", DW, "HK", "Lampung", accepted_after_days=1),
    facts(
        "female", "25-34", "no", DW, "HK", "Lampung", accepted_after_days=2,
        recovered=(("HKD", "100.50"),),
    ),
    facts(
        "female", "25-34", "no", DW, "HK", "Lampung", accepted_after_days=3,
        recovered=(("HKD", "200.25"),),
    ),
    facts("female", "25-34", "no", DW, "HK", "Lampung"),
    facts("female", "25-34", "no", DW, "HK", "Lampung"),
    facts("female", "25-34", "no", DW, "HK", "Lampung"),
    # 3: women, 18-24, with a disability, domestic work in HK, from Jawa Timur
    facts(
        "female", "18-24", "yes", DW, "HK", "Jawa Timur", accepted_after_days=4,
        recovered=(("HKD", "50.00"),),
    ),
    facts("female", "18-24", "yes", DW, "HK", "Jawa Timur"),
    facts("female", "18-24", "yes", DW, "HK", "Jawa Timur"),
    # 2: women, 35-44, disability not asked, domestic work in SG, from Lampung
    facts("female", "35-44", "unknown", DW, "SG", "Lampung"),
    facts("female", "35-44", "unknown", DW, "SG", "Lampung"),
    # 2: men, 25-34, no disability, construction in SG, province unknown
    facts(
        "male", "25-34", "no", CON, "SG", "unknown", accepted_after_days=0.5,
        recovered=(("SGD", "1000.00"),),
    ),
    facts("male", "25-34", "no", CON, "SG", "unknown"),
    # 1: a man, 45+, with a disability, construction in MY, from Jawa Timur
    facts("male", "45+", "yes", CON, "MY", "Jawa Timur"),
]  # fmt: skip


def counts(report: Mapping[str, Any], name: str) -> dict[tuple[str, ...], int | None]:
    part = report["breakdowns"][name]
    return {tuple(g["group"].values()): g["cases"] for g in part["groups"]}


def group(report: Mapping[str, Any], name: str, *key: str) -> dict[str, Any]:
    [row] = [g for g in report["breakdowns"][name]["groups"] if tuple(g["group"].values()) == key]
    return row


def test_each_breakdown_and_crossing_matches_the_hand_count() -> None:
    report = compute_indicators(FIXTURE, min_cell=1)  # nothing suppressed
    assert report["cases"] == 14
    assert counts(report, "gender") == {("female",): 11, ("male",): 3}
    assert counts(report, "age_band") == {
        ("18-24",): 3,
        ("25-34",): 8,
        ("35-44",): 2,
        ("45+",): 1,
    }
    assert counts(report, "disability") == {("no",): 8, ("unknown",): 2, ("yes",): 4}
    assert counts(report, "sector") == {(CON,): 3, (DW,): 11}
    assert counts(report, "employment_country") == {("HK",): 9, ("MY",): 1, ("SG",): 4}
    assert counts(report, "home_province") == {
        ("Jawa Timur",): 4,
        ("Lampung",): 8,
        ("unknown",): 2,
    }
    assert counts(report, "gender_sector_disability") == {
        ("female", DW, "no"): 6,
        ("female", DW, "unknown"): 2,
        ("female", DW, "yes"): 3,  # women domestic workers with a disability
        ("male", CON, "no"): 2,
        ("male", CON, "yes"): 1,
    }
    assert counts(report, "gender_age_band") == {
        ("female", "18-24"): 3,
        ("female", "25-34"): 6,
        ("female", "35-44"): 2,
        ("male", "25-34"): 2,
        ("male", "45+"): 1,
    }
    assert report["breakdowns"]["gender_sector_disability"]["dimensions"] == [
        "gender",
        "sector",
        "disability",
    ]
    assert set(report["breakdowns"]) == set(BREAKDOWNS)


def test_median_days_and_amounts_per_group_are_exact() -> None:
    report = compute_indicators(FIXTURE, min_cell=1)
    female = group(report, "gender", "female")
    assert female["median_days_submission_to_acceptance"] == 2.5  # 1, 2, 3, 4 days
    assert female["amounts_recovered"] == {"HKD": "350.75"}
    male = group(report, "gender", "male")
    assert male["median_days_submission_to_acceptance"] == 0.5
    assert male["amounts_recovered"] == {"SGD": "1000.00"}
    crossed = group(report, "gender_sector_disability", "female", DW, "yes")
    assert crossed["median_days_submission_to_acceptance"] == 4.0
    assert crossed["amounts_recovered"] == {"HKD": "50.00"}
    none_accepted = group(report, "gender_age_band", "female", "35-44")
    assert none_accepted["median_days_submission_to_acceptance"] is None
    assert none_accepted["amounts_recovered"] == {}


def test_small_cells_and_their_complements_are_suppressed_at_five() -> None:
    report = compute_indicators(FIXTURE)  # the default minimum, 5
    assert report["suppression"]["min_cell"] == 5
    # Two groups, one small: the other is hidden too, or it would give the small one away.
    assert counts(report, "gender") == {("female",): None, ("male",): None}
    assert counts(report, "sector") == {(CON,): None, (DW,): None}
    assert counts(report, "age_band") == {
        ("18-24",): None,
        ("25-34",): 8,
        ("35-44",): None,
        ("45+",): None,
    }
    assert counts(report, "disability") == {("no",): 8, ("unknown",): None, ("yes",): None}
    assert counts(report, "employment_country") == {("HK",): 9, ("MY",): None, ("SG",): None}
    assert counts(report, "gender_sector_disability") == {
        ("female", DW, "no"): 6,
        ("female", DW, "unknown"): None,
        ("female", DW, "yes"): None,
        ("male", CON, "no"): None,
        ("male", CON, "yes"): None,
    }
    hidden = group(report, "gender_age_band", "male", "45+")
    assert hidden == {
        "group": {"gender": "male", "age_band": "45+"},
        "cases": None,
        "suppressed": True,
        "median_days_submission_to_acceptance": None,
        "amounts_recovered": None,
    }
    shown = group(report, "gender_age_band", "female", "25-34")
    assert (shown["cases"], shown["suppressed"]) == (6, False)
    assert shown["median_days_submission_to_acceptance"] == 2.0
    assert shown["amounts_recovered"] == {"HKD": "300.75"}
    # The older counts follow the same rule.
    assert report["cases_by"]["employment_country"] == {"HK": 9, "MY": None, "SG": None}
    assert report["suppression"]["suppressed_counts"]["cases_by.employment_country"] == [
        "MY",
        "SG",
    ]
    assert report["cases_by"]["claim_type"] == {"unpaid_wages": 14}


def test_the_csv_writes_suppressed_counts_as_below_the_minimum() -> None:
    rows = indicators_csv_rows(compute_indicators(FIXTURE))
    assert (
        "gender_sector_disability.cases",
        "gender=female;sector=domestic_work;disability=no",
        "6",
    ) in rows
    assert (
        "gender_sector_disability.cases",
        "gender=male;sector=construction;disability=yes",
        "<5",
    ) in rows
    assert ("gender.cases", "gender=female", "<5") in rows
    assert ("cases_by_employment_country", "MY", "<5") in rows
    assert (
        "gender_age_band.amount_recovered.HKD",
        "gender=female;age_band=25-34",
        "300.75",
    ) in rows
    # Nothing but the count of a suppressed group.
    suppressed = "gender=male;age_band=45+"
    assert [r[0] for r in rows if r[1] == suppressed] == ["gender_age_band.cases"]
    withheld = indicators_csv_rows(compute_indicators(FIXTURE[:2]))
    assert ("gender.cases", "", "withheld") in withheld
    assert not [r for r in withheld if r[0] == "gender.cases" and r[1]]


# --- suppression, exhaustively ----------------------------------------------------------


def derivable(hidden: Mapping[str, int], total_hidden: int, upper: int | None) -> set[str]:
    """The hidden cells whose count a reader can work out: every assignment of counts
    (each at least 1, at most `upper` when the reader trusts "<5" literally) that adds up
    to the hidden total is tried; a cell with one possible value is derivable."""
    keys = sorted(hidden)
    top = total_hidden if upper is None else min(upper, total_hidden)
    possible: dict[str, set[int]] = {k: set() for k in keys}
    for values in itertools.product(range(1, top + 1), repeat=len(keys)):
        if sum(values) == total_hidden:
            for k, v in zip(keys, values, strict=True):
                possible[k].add(v)
    return {k for k, seen in possible.items() if len(seen) == 1}


@pytest.mark.parametrize("min_cell", [3, 5])
def test_no_suppressed_cell_can_be_worked_out_from_the_total(min_cell: int) -> None:
    rng = random.Random(14)
    tried = withheld_seen = 0
    for _ in range(1500):
        cells = {
            f"g{i}": rng.choice([1, 1, 2, 3, 4, 4, 5, 6, 9, 20]) for i in range(rng.randint(1, 5))
        }
        total = sum(cells.values())  # the report's total
        hidden, withheld = suppress(cells, min_cell)
        if withheld:
            withheld_seen += 1
            continue  # no group listed: nothing to derive
        if not hidden:
            assert all(n >= min_cell for n in cells.values())
            continue
        tried += 1
        assert {k for k, n in cells.items() if n < min_cell} <= hidden  # every small cell
        shown = sum(n for k, n in cells.items() if k not in hidden)
        hidden_cells = {k: cells[k] for k in hidden}
        assert derivable(hidden_cells, total - shown, upper=None) == set(), cells
        if all(n < min_cell for n in hidden_cells.values()):
            # A reader taking "<5" at its word: all values 1..min_cell-1.
            assert derivable(hidden_cells, total - shown, upper=min_cell - 1) == set(), cells
    assert tried > 500
    assert withheld_seen > 10


def test_the_secondary_cell_is_the_next_smallest_and_hopeless_cases_are_withheld() -> None:
    assert suppress({"a": 3, "b": 9, "c": 7}, 5) == (frozenset({"a", "c"}), False)
    assert suppress({"a": 1, "b": 1, "c": 9, "d": 12}, 5) == (frozenset({"a", "b", "c"}), False)
    assert suppress({"a": 4, "b": 4, "c": 30, "d": 12}, 5) == (frozenset({"a", "b", "d"}), False)
    assert suppress({"a": 2, "b": 3, "c": 30}, 5) == (frozenset({"a", "b"}), False)
    assert suppress({"a": 7, "b": 5}, 5) == (frozenset(), False)
    assert suppress({"a": 1, "b": 1}, 5) == (frozenset({"a", "b"}), True)
    assert suppress({"a": 3}, 5) == (frozenset({"a"}), True)
    assert suppress({"a": 3, "b": 0}, 1) == (frozenset(), False)


# --- facts derived when the case is stored ----------------------------------------------


def test_age_band_is_the_age_reached_on_the_day_of_submission() -> None:
    on = date(2026, 3, 1)
    assert age_band(date(2008, 3, 2), on) == "under_18"  # 18 tomorrow
    assert age_band(date(2008, 3, 1), on) == "18-24"  # 18 today
    assert age_band(date(2001, 3, 2), on) == "18-24"
    assert age_band(date(2001, 3, 1), on) == "25-34"
    assert age_band(date(1991, 3, 1), on) == "35-44"
    assert age_band(date(1981, 3, 2), on) == "35-44"
    assert age_band(date(1981, 3, 1), on) == "45+"
    assert age_band(None, on) == "unknown"


def test_the_province_is_the_part_after_the_last_comma() -> None:
    assert home_province("Lampung Timur, Lampung") == "Lampung"
    assert home_province("Desa Sukamaju, Kec. Pekalongan,  Lampung ") == "Lampung"
    assert home_province("Lampung Timur") == "unknown"  # could be anything: not kept
    assert home_province("Lampung Timur, ") == "unknown"
    assert home_province(None) == "unknown"


def test_disability_by_the_washington_group_cut_off() -> None:
    every = dict.fromkeys(
        ("seeing", "hearing", "walking", "remembering", "self_care", "communicating"), "none"
    )
    assert Functioning.model_validate(every).disability() == "no"
    assert Functioning.model_validate({**every, "walking": "some"}).disability() == "no"
    assert Functioning.model_validate({**every, "walking": "a_lot"}).disability() == "yes"
    assert Functioning.model_validate({"hearing": "cannot_do"}).disability() == "yes"
    assert Functioning.model_validate({"hearing": "some"}).disability() == "unknown"
    with pytest.raises(ValueError, match="seeing"):
        Functioning.model_validate({"seeing": "blind"})


def test_worker_facts_are_derived_from_the_submission_and_forgotten_on_erasure() -> None:
    doc = example_case()
    doc["worker"]["functioning"] = {"seeing": "some", "walking": "cannot_do"}
    submission = CaseSubmission.model_validate(doc)
    assert derive_worker_facts(submission, datetime(2026, 9, 16, tzinfo=UTC)) == {
        "gender": "female",
        "age_band": "25-34",  # born 1994-05-17
        "disability": "yes",
        "sector": "domestic_work",
        "home_province": "Lampung",
    }
    del doc["worker"]["functioning"], doc["worker"]["gender"], doc["worker"]["date_of_birth"]
    bare = derive_worker_facts(
        CaseSubmission.model_validate(doc), datetime(2026, 9, 16, tzinfo=UTC)
    )
    assert (bare["gender"], bare["age_band"], bare["disability"]) == ("unknown",) * 3
    assert set(derive_worker_facts(None, T0).values()) == {"unknown"}

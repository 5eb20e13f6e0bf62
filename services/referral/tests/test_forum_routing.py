"""Per-claim forum routing against the shipped rules file: every example and boundary."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from lintas_referral.domain.forums import ClaimFacts, ClaimRouting, add_months, route_claim
from lintas_referral.domain.rules import load_default_rules

pytestmark = pytest.mark.unit
BOOK = load_default_rules()


def route(**kwargs: object) -> ClaimRouting:
    facts: dict[str, object] = {
        "claim_type": "unpaid_wages",
        "employment_country": "HK",
        "sector": "domestic_work",
        "worker_country": "ID",
        "amount": Decimal("12000.00"),
        "currency": "HKD",
        "arose_on": date(2026, 8, 31),
    }
    facts.update(kwargs)
    return route_claim(0, ClaimFacts(**facts), BOOK)  # type: ignore[arg-type]


def test_hk_wages_under_the_ceiling_go_to_mecab_after_conciliation() -> None:
    r = route()
    assert r.forum is not None
    assert r.forum.code == "HK-MECAB"
    assert [p.code for p in r.prerequisites] == ["HK-LD-CONCILIATION"]
    assert r.next_step
    assert "conciliation" in r.next_step


@pytest.mark.parametrize(
    ("value", "claimants", "forum"),
    [
        ("15000.00", 1, "HK-MECAB"),
        ("15000.01", 1, "HK-LT"),
        ("12000.00", 10, "HK-MECAB"),
        ("12000.00", 11, "HK-LT"),
    ],
)
def test_hk_ceiling_and_claimant_boundaries(value: str, claimants: int, forum: str) -> None:
    r = route(amount=Decimal(value), claimants=claimants)
    assert r.forum is not None
    assert r.forum.code == forum
    assert [p.code for p in r.prerequisites] == ["HK-LD-CONCILIATION"]


def test_a_rule_marked_verify_is_applied_but_flagged_everywhere() -> None:
    r = route()  # HK-MECAB's 12-month rule is marked verify
    assert r.forum is not None
    assert r.deadline is not None
    assert (r.verified, r.forum.verified, r.deadline.verified) == (False, False, False)
    assert r.deadline.date == date(2027, 8, 31)
    lt = route(amount=Decimal("20000.00"))
    assert lt.deadline is not None
    assert (lt.verified, lt.deadline.verified, lt.deadline.date) == (True, True, date(2032, 8, 31))


def test_hk_work_injury_goes_to_the_district_court_within_24_months() -> None:
    r = route(claim_type="work_injury", amount=None, currency=None, arose_on=date(2026, 1, 10))
    assert r.forum is not None
    assert r.forum.code == "HK-ECO-DC"
    assert r.deadline is not None
    assert r.deadline.date == date(2028, 1, 10)
    assert "accident on 2026-01-10" in r.deadline.basis
    assert r.deadline.verified


SG = {"employment_country": "SG", "sector": "construction", "currency": "SGD"}


def test_sg_salary_of_a_worker_still_employed_one_year_after_the_dispute() -> None:
    r = route(**SG, arose_on=date(2026, 3, 15))
    assert r.forum is not None
    assert r.forum.code == "SG-TADM"
    assert [t.code for t in r.then] == ["SG-ECT"]
    assert r.deadline is not None
    assert r.deadline.date == date(2027, 3, 15)


def test_sg_salary_after_leaving_six_months_after_the_last_day() -> None:
    r = route(**SG, arose_on=date(2026, 3, 15), employment_ended_on=date(2026, 8, 31))
    assert r.forum is not None
    assert r.forum.code == "SG-TADM"
    assert r.deadline is not None
    assert r.deadline.date == date(2027, 2, 28)  # clamped to the end of February
    assert "last day of work on 2026-08-31" in r.deadline.basis


def test_sg_wrongful_dismissal_one_month_after_the_last_day() -> None:
    r = route(**SG, claim_type="wrongful_dismissal", employment_ended_on=date(2026, 8, 31))
    assert r.forum is not None
    assert r.forum.code == "SG-TADM"
    assert [t.code for t in r.then] == ["SG-ECT"]
    assert r.deadline is not None
    assert r.deadline.date == date(2026, 9, 30)


def test_sg_domestic_worker_salary_goes_to_mom_not_tadm() -> None:
    r = route(employment_country="SG", sector="domestic_work", currency="SGD")
    assert r.forum is not None
    assert r.forum.code == "SG-MOM-FDW"
    assert r.deadline is None
    assert r.deadline_note
    assert "verify" in r.deadline_note
    assert r.verified is False


def test_sg_domestic_worker_injury_is_not_wica_and_says_so() -> None:
    r = route(employment_country="SG", sector="domestic_work", claim_type="work_injury")
    assert r.status == "unassigned"
    assert r.forum is None
    assert r.reason
    assert "SG-WICA" in r.reason
    assert "not covered" in r.reason


def test_sg_construction_injury_is_wica() -> None:
    r = route(**SG, claim_type="work_injury", arose_on=date(2026, 1, 10))
    assert r.forum is not None
    assert r.forum.code == "SG-WICA"
    assert r.deadline is not None
    assert r.deadline.date == date(2027, 1, 10)


@pytest.mark.parametrize("country", ["HK", "SG", "MY"])
def test_excess_placement_fees_go_to_bp2mi_in_indonesia(country: str) -> None:
    r = route(claim_type="excess_placement_fees", employment_country=country)
    assert r.forum is not None
    assert (r.forum.code, r.jurisdiction, r.verified) == ("ID-BP2MI", "ID", False)


def test_a_claim_no_rule_covers_goes_to_a_human_with_the_reason() -> None:
    r = route(employment_country="MY", claim_type="abuse")
    assert r.status == "unassigned"
    assert r.reason
    assert "abuse" in r.reason
    assert "MY" in r.reason


def test_a_missing_start_date_gives_no_deadline_and_says_why() -> None:
    r = route(arose_on=None)
    assert r.deadline is None
    assert r.deadline_note
    assert "not known" in r.deadline_note


def test_add_months_clamps_to_month_end() -> None:
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2026, 12, 15), 1) == date(2027, 1, 15)


def test_a_worker_who_has_left_singapore_is_told_what_that_means() -> None:
    abroad = route(**SG, worker_country="ID")
    assert len(abroad.notes) == 1
    assert "civil lawyer" in abroad.notes[0]
    assert route(**SG, worker_country="SG").notes == ()
    assert route(worker_country="ID").notes == ()  # no such note on the HK rules

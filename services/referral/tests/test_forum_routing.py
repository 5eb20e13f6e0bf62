"""Per-claim forum routing against the shipped rules file: every example and boundary."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from lintas_referral.domain.forums import ClaimFacts, ClaimRouting, add_months, route_claim
from lintas_referral.domain.rules import load_default_rules

pytestmark = pytest.mark.unit
BOOK = load_default_rules()
TODAY = date(2026, 9, 16)
SG = {
    "employment_country": "SG",
    "sector": "construction",
    "currency": "SGD",
}  # the routing's clock (injected, never read from the system)


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
    today = kwargs.pop("today", TODAY)
    facts.update(kwargs)
    return route_claim(0, ClaimFacts(**facts), BOOK, today)  # type: ignore[arg-type]


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
    assert r.verified


def test_conciliation_is_required_before_mecab_but_only_suggested_before_the_lt() -> None:
    mecab = route()
    assert [p.code for p in mecab.prerequisites] == ["HK-LD-CONCILIATION"]
    assert mecab.suggested == ()
    lt = route(amount=Decimal("15000.01"))
    assert lt.prerequisites == ()
    assert [p.code for p in lt.suggested] == ["HK-LD-CONCILIATION"]
    assert lt.next_step
    assert "voluntary" in lt.next_step


@pytest.mark.parametrize(
    ("arose_on", "forum"),
    [(date(2025, 9, 16), "HK-MECAB"), (date(2025, 9, 15), "HK-LT")],
    ids=["12-months", "12-months-and-a-day"],
)
def test_mecab_12_months_is_its_jurisdiction_not_a_deadline(arose_on: date, forum: str) -> None:
    r = route(arose_on=arose_on)
    assert r.forum is not None
    assert r.forum.code == forum
    assert r.status == "routed"
    assert r.deadline is not None
    assert r.deadline.date == date(arose_on.year + 6, arose_on.month, arose_on.day)
    assert not r.deadline_passed
    if forum == "HK-MECAB":
        assert r.forum_until == TODAY
    else:
        assert any("Not HK-MECAB" in n for n in r.notes)


@pytest.mark.parametrize(
    ("value", "arose_on", "forum"),
    [
        ("8000.00", date(2021, 9, 16), "HK-MECAB"),
        ("8000.01", date(2021, 9, 16), "HK-LT"),
        ("8000.01", date(2021, 9, 17), "HK-MECAB"),
        ("15000.00", date(2021, 9, 17), "HK-MECAB"),
    ],
)
def test_mecab_ceiling_is_8000_where_the_right_arose_before_17_sep_2021(
    value: str, arose_on: date, forum: str
) -> None:
    r = route(amount=Decimal(value), arose_on=arose_on, today=date(2022, 3, 1))
    assert r.forum is not None
    assert r.forum.code == forum


def test_the_mecab_row_is_verified() -> None:
    r = route()
    assert r.forum is not None
    assert r.deadline is not None
    assert (r.verified, r.forum.verified, r.deadline.verified) == (True, True, True)


def test_a_rule_marked_verify_is_applied_but_flagged_everywhere() -> None:
    r = route(**SG, claim_type="work_injury", arose_on=date(2026, 1, 10))  # SG-WICA: verify
    assert r.forum is not None
    assert r.deadline is not None
    assert (r.verified, r.forum.verified, r.deadline.verified) == (False, False, False)


@pytest.mark.parametrize(
    ("kwargs", "missing"),
    [
        ({"amount": None, "currency": None}, "no amount was given"),
        ({"currency": "IDR", "amount": Decimal("1000000.00")}, "given in IDR"),
    ],
    ids=["no-amount", "foreign-currency"],
)
def test_an_amount_that_cannot_be_compared_is_never_verified(
    kwargs: dict[str, object], missing: str
) -> None:
    r = route(**kwargs)
    assert r.forum is not None
    assert r.forum.code == "HK-LT"  # hears any amount; MECAB could not be shown to apply
    assert r.verified is False
    assert r.forum.verified is False
    assert r.deadline is not None
    assert r.deadline.verified is False
    assert any(missing in m and "HKD" in m for m in r.missing_facts)
    sg = route(**{**SG, **kwargs, "employment_ended_on": date(2026, 8, 31)})
    assert sg.forum is not None
    assert (sg.forum.code, sg.verified) == ("SG-TADM", False)
    assert any("SGD" in m for m in sg.missing_facts)


def test_ceilings_are_per_claimant() -> None:
    # HK$15,000 each for 10 claimants (HK$150,000 in all) is still MECAB's.
    r = route(amount=Decimal("15000.00"), claimants=10)
    assert r.forum is not None
    assert r.forum.code == "HK-MECAB"


def test_a_passed_deadline_with_a_late_route_says_so_and_shows_the_route() -> None:
    r = route(claim_type="work_injury", amount=None, currency=None, arose_on=date(2024, 9, 15))
    assert r.status == "routed"
    assert r.deadline is not None
    assert r.deadline.date == date(2026, 9, 15)
    assert r.deadline_passed
    assert any("deadline passed on 2026-09-15" in w for w in r.warnings)
    assert r.late_filing
    assert "s.14(4)" in r.late_filing
    on_the_day = route(claim_type="work_injury", arose_on=date(2024, 9, 16))
    assert not on_the_day.deadline_passed
    assert on_the_day.late_filing is None


def test_a_passed_deadline_without_a_late_route_goes_to_a_caseworker() -> None:
    r = route(**SG, arose_on=date(2025, 7, 1), employment_ended_on=date(2025, 8, 1))
    assert r.status == "unassigned"
    assert r.deadline_passed
    assert r.reason
    assert "deadline passed on 2026-02-01" in r.reason
    assert "caseworker" in r.reason


def test_wica_late_claims_are_shown_once_its_year_has_passed() -> None:
    r = route(**SG, claim_type="work_injury", arose_on=date(2025, 9, 1))
    assert (r.status, r.deadline_passed) == ("routed", True)
    assert r.late_filing
    assert "reasonable cause" in r.late_filing


@pytest.mark.parametrize(
    ("value", "warned", "mediation_note"),
    [
        ("20000.00", False, False),
        ("20000.01", True, True),
        ("30000.00", True, True),
        ("30000.01", True, False),
    ],
)
def test_sg_ect_ceiling_warns_and_offers_the_civil_court(
    value: str, warned: bool, mediation_note: bool
) -> None:
    r = route(**{**SG, "amount": Decimal(value), "employment_ended_on": date(2026, 8, 31)})
    assert r.forum is not None
    assert r.forum.code == "SG-TADM"  # still routed to TADM, whatever the amount
    assert r.verified
    assert [t.code for t in r.then] == ["SG-ECT"]
    assert bool(r.warnings) is warned
    assert ([a.code for a in r.alternatives] == ["SG-CIVIL"]) is warned
    if warned:
        assert "give up the amount above the ceiling" in r.warnings[0]
        assert ("only if the claim went through" in r.warnings[0]) is mediation_note


def test_sg_wrongful_dismissal_has_its_own_ceiling() -> None:
    r = route(
        **SG,
        claim_type="wrongful_dismissal",
        amount=Decimal("25000.00"),
        employment_ended_on=date(2026, 8, 31),
    )
    assert r.forum is not None
    assert r.forum.code == "SG-TADM"
    assert r.warnings
    assert "wrongful-dismissal limit is separate" in r.warnings[0]


def test_hk_injury_first_goes_to_the_employees_compensation_division() -> None:
    r = route(claim_type="work_injury", amount=None, currency=None, arose_on=date(2026, 1, 10))
    assert [p.code for p in r.prerequisites] == ["HK-LD-ECD"]
    assert [a.code for a in r.alternatives] == ["HK-SCT"]


FEES = {"claim_type": "excess_placement_fees", "currency": "IDR", "amount": Decimal("1.00")}


def test_hk_agency_overcharging_goes_to_the_eaa() -> None:
    r = route(**FEES, agency_country="HK", arose_on=date(2026, 3, 1))
    assert r.forum is not None
    assert (r.forum.code, r.jurisdiction) == ("HK-EAA", "HK")
    assert r.next_step
    assert "10%" in r.next_step
    assert r.deadline is not None
    assert r.deadline.date == date(2027, 3, 1)
    late = route(**FEES, agency_country="HK", arose_on=date(2025, 9, 15))
    assert late.status == "unassigned"  # no prosecution after 12 months: a human decides
    assert late.reason
    assert "deadline passed on 2026-09-15" in late.reason


def test_sg_agency_overcharging_goes_to_mom_with_the_fee_caps() -> None:
    r = route(**FEES, employment_country="SG", agency_country="SG")
    assert r.forum is not None
    assert r.forum.code == "SG-MOM-EA"
    assert r.next_step
    assert "two months" in r.next_step


def test_indonesian_agency_goes_to_the_consulate_while_she_is_abroad() -> None:
    abroad = route(**FEES, agency_country="ID", worker_country="HK")
    assert abroad.forum is not None
    assert abroad.forum.code == "ID-CONSULATE"
    assert [t.code for t in abroad.then] == ["ID-BP2MI"]
    home = route(**FEES, agency_country="ID", worker_country="ID")
    assert home.forum is not None
    assert home.forum.code == "ID-BP2MI"
    assert home.missing_facts == ()


def test_the_indonesian_zero_cost_basis_is_named() -> None:
    r = route(**FEES, agency_country="ID")
    assert r.legal_basis
    assert "UU 18/2017 Pasal 30" in r.legal_basis
    assert "Perban BP2MI 9/2020" in r.legal_basis
    forum = BOOK.forum_by_code("ID-BP2MI")
    assert forum.status == "verify"  # Perban 23/2025 vs 6/2024 still to be checked
    assert "23/2025" in forum.source


def test_hk_work_injury_goes_to_the_district_court_within_24_months() -> None:
    r = route(claim_type="work_injury", amount=None, currency=None, arose_on=date(2026, 1, 10))
    assert r.forum is not None
    assert r.forum.code == "HK-ECO-DC"
    assert r.missing_facts == ()
    assert r.deadline is not None
    assert r.deadline.date == date(2028, 1, 10)
    assert "accident on 2026-01-10" in r.deadline.basis
    assert r.deadline.verified


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
    assert any("placement_agency_country" in m for m in r.missing_facts)


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
    assert not any("civil lawyer" in n for n in route(worker_country="ID").notes)  # not HK

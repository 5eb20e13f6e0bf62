"""Every routing example and boundary of issue 4, routed and stored on the real server.

The pure rules are unit-tested in test_forum_routing.py; here each example goes through
the consumer's handler into the real store, and the stored routing is read back.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from lintas_referral import handlers
from lintas_referral.domain.forums import ClaimRouting
from lintas_shared.values import ClaimType, Sector

from services.referral.tests.conftest import Stores
from tests.support.referral_cases import case, claim, submitted

pytestmark = pytest.mark.integration

EXAMPLES = [
    # (name, case arguments, forum code, deadline or None, verified)
    ("hk-12000", {"claims": (claim(value="12000.00"),)}, "HK-MECAB", date(2032, 8, 31), True),
    ("hk-15000.00", {"claims": (claim(value="15000.00"),)}, "HK-MECAB", date(2032, 8, 31), True),
    ("hk-15000.01", {"claims": (claim(value="15000.01"),)}, "HK-LT", date(2032, 8, 31), True),
    (
        "hk-10-claimants",
        {"claims": (claim(value="15000.00", claimants=10),)},
        "HK-MECAB",
        date(2032, 8, 31),
        True,
    ),
    (
        "hk-11-claimants",
        {"claims": (claim(value="12000.00", claimants=11),)},
        "HK-LT",
        date(2032, 8, 31),
        True,
    ),
    (
        "hk-injury",
        {"claims": (claim(ClaimType.WORK_INJURY, value=None, arose_on=date(2026, 1, 10)),)},
        "HK-ECO-DC",
        date(2028, 1, 10),
        True,
    ),
    (
        "sg-domestic-salary",
        {
            "country": "SG",
            "share_with": ("SG",),
            "claims": (claim(currency="SGD", value="3000.00"),),
        },
        "SG-MOM-FDW",
        None,
        False,
    ),
    (
        "sg-construction-still-employed",
        {
            "country": "SG",
            "share_with": ("SG",),
            "sector": Sector.CONSTRUCTION,
            "ended_on": None,
            "claims": (claim(currency="SGD", value="3000.00", arose_on=date(2026, 8, 31)),),
        },
        "SG-TADM",
        date(2027, 8, 31),
        True,
    ),
    (
        "placement-fees",
        {
            "share_with": ("HK", "ID"),
            "claims": (
                claim(ClaimType.EXCESS_PLACEMENT_FEES, currency="IDR", value="15000000.00"),
            ),
        },
        "ID-BP2MI",
        None,
        False,
    ),
    (
        "hk-arose-12-months-before",
        {"claims": (claim(value="12000.00", arose_on=date(2025, 9, 16)),)},
        "HK-MECAB",
        date(2031, 9, 16),
        True,
    ),
    (
        "hk-arose-12-months-and-a-day-before",
        {"claims": (claim(value="12000.00", arose_on=date(2025, 9, 15)),)},
        "HK-LT",
        date(2031, 9, 15),
        True,
    ),
    (
        "hk-agency-overcharging",
        {
            "agency_country": "HK",
            "claims": (
                claim(ClaimType.EXCESS_PLACEMENT_FEES, value="3000.00", arose_on=date(2026, 3, 1)),
            ),
        },
        "HK-EAA",
        date(2027, 3, 1),
        False,
    ),
]


@pytest.mark.parametrize(
    ("name", "facts", "forum", "deadline", "verified"), EXAMPLES, ids=[e[0] for e in EXAMPLES]
)
async def test_example_is_routed_and_stored(
    stores: Stores,
    name: str,
    facts: dict[str, object],
    forum: str,
    deadline: date | None,
    verified: bool,
) -> None:
    case_id = f"case-{name}"
    await handlers.on_case_submitted(submitted(case(case_id, **facts)), stores.ctx)  # type: ignore[arg-type]
    routing = await stores.routings.get(case_id)
    assert routing is not None
    [stored] = routing.claims
    assert stored.forum is not None
    assert stored.forum.code == forum
    if deadline is None:
        assert stored.deadline is None
    else:
        assert stored.deadline is not None
        assert stored.deadline.date == deadline
        assert stored.deadline.verified is verified


async def test_sg_domestic_worker_injury_is_not_wica_and_says_so(stores: Stores) -> None:
    facts = case(
        "case-sg-fdw-injury",
        country="SG",
        share_with=("SG",),
        claims=(claim(ClaimType.WORK_INJURY, value=None, arose_on=date(2026, 1, 10)),),
    )
    await handlers.on_case_submitted(submitted(facts), stores.ctx)
    routing = await stores.routings.get("case-sg-fdw-injury")
    assert routing is not None
    [stored] = routing.claims
    assert stored.forum is None or stored.forum.code != "SG-WICA"
    assert "not covered" in str(routing.model_dump())


async def _route(stores: Stores, case_id: str, **facts: object) -> ClaimRouting:
    await handlers.on_case_submitted(submitted(case(case_id, **facts)), stores.ctx)  # type: ignore[arg-type]
    routing = await stores.routings.get(case_id)
    assert routing is not None
    [stored] = routing.claims
    return stored


async def test_mecab_ceiling_is_8000_before_17_sep_2021(stores: Stores) -> None:
    stores.clock.now = datetime(2022, 3, 1, 9, tzinfo=UTC)  # the routing's clock, injected
    early = (claim(value="8000.01", arose_on=date(2021, 9, 16)),)
    later = (claim(value="8000.01", arose_on=date(2021, 9, 17)),)
    at_ceiling = (claim(value="8000.00", arose_on=date(2021, 9, 16)),)
    for case_id, claims, forum in [
        ("case-mecab-8000.01-early", early, "HK-LT"),
        ("case-mecab-8000.01-later", later, "HK-MECAB"),
        ("case-mecab-8000.00-early", at_ceiling, "HK-MECAB"),
    ]:
        stored = await _route(stores, case_id, claims=claims)
        assert stored.forum is not None
        assert stored.forum.code == forum, case_id


async def test_a_past_deadline_says_so_and_shows_the_late_route(stores: Stores) -> None:
    injury = (claim(ClaimType.WORK_INJURY, value=None, arose_on=date(2024, 9, 15)),)
    stored = await _route(stores, "case-past-deadline", claims=injury)
    assert stored.status == "routed"
    assert stored.deadline is not None
    assert stored.deadline.date == date(2026, 9, 15)
    assert stored.deadline_passed
    assert any("deadline passed on 2026-09-15" in w for w in stored.warnings)
    assert stored.late_filing
    assert "s.14(4)" in stored.late_filing
    routing = await stores.routings.get("case-past-deadline")
    assert routing is not None
    assert [m for m in routing.reminders if m.state == "scheduled"] == []


async def test_a_past_deadline_without_a_late_route_goes_to_a_caseworker(stores: Stores) -> None:
    stored = await _route(
        stores,
        "case-past-no-route",
        country="SG",
        share_with=("SG",),
        sector=Sector.CONSTRUCTION,
        ended_on=date(2025, 8, 1),
        claims=(claim(currency="SGD", value="3000.00", arose_on=date(2025, 7, 1)),),
    )
    assert stored.status == "unassigned"
    assert stored.reason
    assert "deadline passed on 2026-02-01" in stored.reason
    routing = await stores.routings.get("case-past-no-route")
    assert routing is not None
    assert routing.status == "unassigned"
    assert routing.reason
    assert "deadline passed on 2026-02-01" in routing.reason


@pytest.mark.parametrize(
    ("value", "warned", "mediated"),
    [
        ("20000.00", False, False),
        ("20000.01", True, True),
        ("30000.00", True, True),
        ("30000.01", True, False),
    ],
)
async def test_sg_ect_ceiling_is_data_and_a_claim_above_still_goes_to_tadm(
    stores: Stores, value: str, warned: bool, mediated: bool
) -> None:
    stored = await _route(
        stores,
        f"case-sg-{value}",
        country="SG",
        share_with=("SG",),
        sector=Sector.CONSTRUCTION,
        claims=(claim(currency="SGD", value=value, arose_on=date(2026, 8, 31)),),
    )
    assert stored.forum is not None
    assert (stored.forum.code, stored.status, stored.verified) == ("SG-TADM", "routed", True)
    assert bool(stored.warnings) is warned
    assert ([a.code for a in stored.alternatives] == ["SG-CIVIL"]) is warned
    if warned:
        assert ("S$" in stored.warnings[0]) or ("SGD" in stored.warnings[0])
        assert ("only if the claim went through" in stored.warnings[0]) is mediated


@pytest.mark.parametrize(
    ("value", "currency", "missing"),
    [(None, "HKD", "no amount was given"), ("5000000.00", "IDR", "given in IDR")],
    ids=["missing-amount", "foreign-currency"],
)
async def test_an_amount_that_cannot_be_compared_is_not_verified(
    stores: Stores, value: str | None, currency: str, missing: str
) -> None:
    stored = await _route(
        stores, f"case-uncomparable-{currency}", claims=(claim(value=value, currency=currency),)
    )
    assert stored.forum is not None
    assert (stored.forum.code, stored.verified, stored.forum.verified) == ("HK-LT", False, False)
    assert stored.deadline is not None
    assert stored.deadline.verified is False
    assert any(missing in m for m in stored.missing_facts)


async def test_the_indonesian_zero_cost_basis_is_named(stores: Stores) -> None:
    stored = await _route(
        stores,
        "case-id-zero-cost",
        agency_country="ID",
        share_with=("ID",),
        claims=(claim(ClaimType.EXCESS_PLACEMENT_FEES, currency="IDR", value="15000000.00"),),
    )
    assert stored.forum is not None
    assert stored.forum.code == "ID-BP2MI"
    assert stored.legal_basis
    assert "UU 18/2017 Pasal 30" in stored.legal_basis
    assert "Perban BP2MI 9/2020" in stored.legal_basis
    assert stored.verified is False  # Perban 23/2025 vs 6/2024: still to verify


async def test_an_indonesian_agency_and_a_worker_abroad_go_to_the_consulate(
    stores: Stores,
) -> None:
    stored = await _route(
        stores,
        "case-id-consulate",
        agency_country="ID",
        worker_country="HK",
        share_with=("ID",),
        claims=(claim(ClaimType.EXCESS_PLACEMENT_FEES, currency="IDR", value="15000000.00"),),
    )
    assert stored.forum is not None
    assert stored.forum.code == "ID-CONSULATE"
    assert [t.code for t in stored.then] == ["ID-BP2MI"]

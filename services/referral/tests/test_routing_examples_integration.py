"""Every routing example and boundary of issue 4, routed and stored on the real server.

The pure rules are unit-tested in test_forum_routing.py; here each example goes through
the consumer's handler into the real store, and the stored routing is read back.
"""

from __future__ import annotations

from datetime import date

import pytest
from lintas_referral import handlers
from lintas_shared.values import ClaimType, Sector

from services.referral.tests.conftest import Stores
from tests.support.referral_cases import case, claim, submitted

pytestmark = pytest.mark.integration

EXAMPLES = [
    # (name, case arguments, forum code, deadline or None, verified)
    ("hk-12000", {"claims": (claim(value="12000.00"),)}, "HK-MECAB", date(2027, 8, 31), False),
    ("hk-15000.00", {"claims": (claim(value="15000.00"),)}, "HK-MECAB", date(2027, 8, 31), False),
    ("hk-15000.01", {"claims": (claim(value="15000.01"),)}, "HK-LT", date(2032, 8, 31), True),
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

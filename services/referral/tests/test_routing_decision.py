"""The routing decision, as a pure function."""

from __future__ import annotations

import pytest
from lintas_referral.domain.routing import Blocked, Offer, Partner, decide
from lintas_shared.events import CaseSubmitted, parse_payload
from lintas_shared.values import ClaimType, ConsentPurpose

from tests.support.fixtures import case_submitted

pytestmark = pytest.mark.unit

HK_A = Partner("org-hk-a", "A", "HK", capacity=10, open_referrals=3)
HK_B = Partner("org-hk-b", "B", "HK", capacity=10, open_referrals=1)
SG = Partner("org-sg", "S", "SG")


def case(**kwargs: object) -> CaseSubmitted:
    return parse_payload(case_submitted(**kwargs), CaseSubmitted)  # type: ignore[arg-type]


def test_offers_to_the_least_loaded_partner_in_the_employment_country() -> None:
    decision = decide(case(), [HK_A, HK_B, SG])
    assert decision == Offer(partner=HK_B, country="HK")


def test_ties_are_broken_by_partner_id() -> None:
    a = Partner("org-b", "B", "HK")
    b = Partner("org-a", "A", "HK")
    decision = decide(case(), [a, b])
    assert isinstance(decision, Offer)
    assert decision.partner.id == "org-a"


def test_consent_not_covering_the_country_waits_for_consent() -> None:
    decision = decide(case(share_with=("SG",)), [HK_A])
    assert decision == Blocked("awaiting_consent", "consent does not cover sharing with HK")


def test_consent_without_legal_referral_purpose_waits_for_consent() -> None:
    decision = decide(case(purposes=(ConsentPurpose.SMS_UPDATES,)), [HK_A])
    assert isinstance(decision, Blocked)
    assert decision.status == "awaiting_consent"
    assert "legal_referral" in decision.reason


def test_no_partner_with_capacity_leaves_the_case_unassigned() -> None:
    full = Partner("org-hk-full", "F", "HK", capacity=2, open_referrals=2)
    decision = decide(case(), [full])
    assert isinstance(decision, Blocked)
    assert decision.status == "unassigned"


def test_partner_must_handle_every_claim_type() -> None:
    wages_only = Partner("org-hk-w", "W", "HK", claim_types=frozenset({"unpaid_wages"}))
    decision = decide(
        case(claim_types=(ClaimType.UNPAID_WAGES, ClaimType.WORK_INJURY)), [wages_only]
    )
    assert isinstance(decision, Blocked)
    assert decision.status == "unassigned"


def test_unrouted_jurisdiction_goes_to_a_human() -> None:
    decision = decide(case(country="MY", share_with=("MY",)), [HK_A])
    assert isinstance(decision, Blocked)
    assert decision.status == "unassigned"
    assert "MY" in decision.reason

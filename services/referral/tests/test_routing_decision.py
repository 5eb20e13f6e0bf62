"""Choosing the partner, as a pure function."""

from __future__ import annotations

import pytest
from lintas_referral.domain.routing import Partner, choose_partner

pytestmark = pytest.mark.unit

HK_A = Partner("org-hk-a", "A", "HK", capacity=10, open_referrals=3)
HK_B = Partner("org-hk-b", "B", "HK", capacity=10, open_referrals=1)
SG = Partner("org-sg", "S", "SG")


def choose(partners: list[Partner], **kwargs: object) -> Partner | None:
    args: dict[str, object] = {"country": "HK", "claim_types": {"unpaid_wages"}, "language": "id"}
    args.update(kwargs)
    return choose_partner(partners, **args)  # type: ignore[arg-type]


def test_least_loaded_partner_in_the_country_first() -> None:
    assert choose([HK_A, HK_B, SG]) == HK_B


def test_ties_are_broken_by_partner_id() -> None:
    assert choose([Partner("org-b", "B", "HK"), Partner("org-a", "A", "HK")]) == Partner(
        "org-a", "A", "HK"
    )


def test_load_is_relative_to_capacity() -> None:
    big = Partner("org-big", "Big", "HK", capacity=100, open_referrals=5)
    small = Partner("org-small", "Small", "HK", capacity=4, open_referrals=1)
    assert choose([big, small]) == big


def test_full_partners_and_excluded_ones_are_skipped() -> None:
    full = Partner("org-hk-full", "F", "HK", capacity=2, open_referrals=2)
    assert choose([full]) is None
    assert choose([HK_A, HK_B], exclude={"org-hk-b"}) == HK_A


def test_partner_must_handle_every_claim_type() -> None:
    wages_only = Partner("org-hk-w", "W", "HK", claim_types=frozenset({"unpaid_wages"}))
    assert choose([wages_only], claim_types={"unpaid_wages", "work_injury"}) is None
    assert choose([wages_only]) == wages_only


def test_partner_must_speak_the_workers_language_when_it_says_which() -> None:
    english = Partner("org-en", "E", "HK", languages=frozenset({"en"}))
    both = Partner("org-zz", "Z", "HK", languages=frozenset({"en", "id"}))
    assert choose([english]) is None
    assert choose([english, both]) == both

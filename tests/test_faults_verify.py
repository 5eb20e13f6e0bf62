"""The fault run's order check judges closed cases as it should (pure; no servers)."""

from __future__ import annotations

import pytest
from lintas_faults.driver import Submission
from lintas_faults.verify import intake_updated, referral_expected

pytestmark = pytest.mark.unit

OFFERED = {"status": "referred", "referrals": [{"status": "offered"}]}
WITHDRAWN = {"status": "closed", "referrals": [{"status": "withdrawn"}]}


def _sub(close: str | None) -> Submission:
    return Submission(1, "FAULTS-x-000001", "faults-x-000001", case_id="c1", close=close)


def test_an_open_case_needs_an_offer_and_a_routed_status_at_intake() -> None:
    assert referral_expected(_sub(None), OFFERED)
    assert not referral_expected(_sub(None), None)
    assert intake_updated(_sub(None), {"status": "referred"})
    assert not intake_updated(_sub(None), {"status": "submitted"})


def test_a_closed_case_handled_in_order_was_offered_then_withdrawn() -> None:
    assert referral_expected(_sub("closed"), WITHDRAWN)
    assert intake_updated(_sub("closed"), {"status": "closed"})


def test_a_close_handled_before_the_submission_leaves_the_offer_open() -> None:
    # Out of order, the close finds no routing; the submission then offers, and stays.
    assert not referral_expected(_sub("closed"), OFFERED)
    assert not referral_expected(_sub("closed"), {"status": "closed", "referrals": []})
    assert not intake_updated(_sub("closed"), {"status": "referred"})


def test_an_unanswered_close_accepts_either_outcome() -> None:
    assert intake_updated(_sub("gave_up"), {"status": "closed"})
    assert intake_updated(_sub("gave_up"), {"status": "referred"})

"""The case-routing aggregate: consent gate, handoff, lifecycle, expiry and reminders."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from lintas_referral.domain.case_routing import (
    CaseRouting,
    Policy,
    Progress,
    ReferralNotFoundError,
    TransitionError,
)
from lintas_referral.domain.handoff import load_default_manifests
from lintas_referral.domain.routing import Partner
from lintas_referral.domain.rules import load_default_rules
from lintas_shared.crypto import DataKey
from lintas_shared.events import (
    PARTNER_NOTE_FIELD,
    CaseDetailsCorrected,
    CaseRoutingBlocked,
    ConsentSummary,
    DeadlineApproaching,
    EventPayload,
    ReferralClosed,
    ReferralDeclined,
    ReferralExpired,
    ReferralOffered,
    ReferralProgressed,
    ReferralWithdrawn,
)
from lintas_shared.values import ClaimType, ConsentPurpose, Money, Sector

from tests.support.referral_cases import case, claim

pytestmark = pytest.mark.unit
RULES = load_default_rules()
POLICY = Policy(manifest=load_default_manifests()["legal_referral"])
NOW = datetime(2026, 9, 16, 9, tzinfo=UTC)
#: Partners' free text reaches the aggregate sealed (the use cases seal it).
KEY = DataKey("case-1", bytes(32))
CONFLICT = KEY.encrypt(PARTNER_NOTE_FIELD, "conflict")
HK1 = Partner("org-hk-1", "HK one", "HK")
HK2 = Partner("org-hk-2", "HK two", "HK", open_referrals=1)
ID1 = Partner("org-id-1", "ID one", "ID")
PARTNERS = {"HK": [HK1, HK2], "ID": [ID1]}


def types(events: list[EventPayload]) -> list[str]:
    return [type(e).__name__ for e in events]


def routed(**kwargs: object) -> tuple[CaseRouting, list[EventPayload]]:
    r = CaseRouting.new(case(**kwargs), RULES, NOW)  # type: ignore[arg-type]
    return r, r.route(PARTNERS, POLICY, NOW)


def test_offer_carries_forum_and_deadline_and_records_the_handoff() -> None:
    r, events = routed()
    [offer] = events
    assert isinstance(offer, ReferralOffered)
    assert offer.partner_organisation_id == "org-hk-1"  # least loaded
    assert offer.forum is not None
    assert (offer.forum.code, offer.forum.verified) == ("HK-MECAB", True)
    assert offer.deadline is not None
    assert offer.deadline.date == date(2032, 8, 31)  # 6 years; MECAB's 12 months: jurisdiction
    [referral] = r.referrals
    assert referral.expires_at == NOW + timedelta(hours=72)
    handoff = referral.handoff
    assert (handoff.purpose, handoff.recipient_organisation_id, handoff.recipient_country) == (
        "legal_referral",
        "org-hk-1",
        "HK",
    )
    assert handoff.consent_id == "consent-case-1"
    assert handoff.fields == POLICY.manifest.fields
    assert "UU 27/2022" in handoff.legal_basis
    assert r.status == "referred"


def test_no_consent_for_the_country_waits_for_consent_and_says_why() -> None:
    r, events = routed(share_with=("SG",))
    [blocked] = events
    assert isinstance(blocked, CaseRoutingBlocked)
    assert blocked.status == "awaiting_consent"
    assert blocked.reason == "consent does not cover sharing with HK"
    assert r.referrals == []


def test_consent_without_the_legal_referral_purpose_waits_for_consent() -> None:
    r, _ = routed(purposes=(ConsentPurpose.SMS_UPDATES,))
    assert r.status == "awaiting_consent"
    assert r.reason == "consent does not cover the purpose legal_referral"


def test_consent_naming_one_organisation_allows_only_that_one() -> None:
    _r, events = routed(share_with=(), share_with_organisations=("org-hk-2",))
    assert isinstance(events[0], ReferralOffered)
    assert events[0].partner_organisation_id == "org-hk-2"


def test_a_new_consent_resumes_routing() -> None:
    r, _ = routed(share_with=())
    summary = ConsentSummary(
        consent_id="consent-2",
        purposes=(ConsentPurpose.LEGAL_REFERRAL,),
        share_with_countries=("HK",),
    )
    events = r.record_consent(summary, PARTNERS, POLICY, NOW)
    assert types(events) == ["ReferralOffered"]
    assert r.referrals[0].handoff.consent_id == "consent-2"
    assert r.status == "referred"


def test_withdrawn_consent_withdraws_the_referral_it_allowed() -> None:
    r, _ = routed()
    r.accept(r.referrals[0].id, "org-hk-1", NOW)
    events = r.withdraw_consent("consent-case-1", NOW, PARTNERS, POLICY, NOW)
    assert types(events) == ["ReferralWithdrawn", "CaseRoutingBlocked"]
    assert isinstance(events[0], ReferralWithdrawn)
    assert events[0].partner_organisation_id == "org-hk-1"
    assert r.referrals[0].status == "withdrawn"
    assert r.status == "awaiting_consent"


def test_accept_progress_close() -> None:
    r, _ = routed()
    rid = r.referrals[0].id
    assert types(r.accept(rid, "org-hk-1", NOW)) == ["ReferralAccepted"]
    assert r.status == "accepted"
    report = Progress(filed_at_forum=True, hearing_on=date(2026, 11, 2), at=NOW)
    [progressed] = r.progress(rid, "org-hk-1", report, NOW)
    assert isinstance(progressed, ReferralProgressed)
    assert progressed.hearing_on == date(2026, 11, 2)
    assert r.status == "in_progress"
    [closed] = r.close_referral(
        rid, "org-hk-1", "recovered", [Money(currency="HKD", value="9000.00")], NOW
    )
    assert isinstance(closed, ReferralClosed)
    assert r.status == "closed"
    assert [h.status for h in r.referrals[0].history] == [
        "offered",
        "accepted",
        "in_progress",
        "closed",
    ]


def test_transitions_outside_the_lifecycle_are_refused() -> None:
    r, _ = routed()
    rid = r.referrals[0].id
    with pytest.raises(TransitionError):
        r.progress(rid, "org-hk-1", Progress(at=NOW), NOW)
    r.accept(rid, "org-hk-1", NOW)
    with pytest.raises(TransitionError):
        r.accept(rid, "org-hk-1", NOW)
    with pytest.raises(TransitionError):
        r.decline(rid, "org-hk-1", "too late", PARTNERS, POLICY, NOW)


def test_another_partners_referral_is_not_found() -> None:
    r, _ = routed()
    with pytest.raises(ReferralNotFoundError):
        r.accept(r.referrals[0].id, "org-hk-2", NOW)


def test_decline_goes_to_the_next_partner_then_unassigned() -> None:
    r, _ = routed()
    events = r.decline(r.referrals[0].id, "org-hk-1", CONFLICT, PARTNERS, POLICY, NOW)
    assert types(events) == ["ReferralDeclined", "ReferralOffered"]
    assert isinstance(events[0], ReferralDeclined)
    # The partner's words travel sealed in `note`; `reason` is for the system's words.
    assert (events[0].note, events[0].reason) == (CONFLICT, None)
    assert r.referrals[0].history[-1].note == CONFLICT
    assert isinstance(events[1], ReferralOffered)
    assert events[1].partner_organisation_id == "org-hk-2"
    events = r.decline(r.referrals[1].id, "org-hk-2", None, PARTNERS, POLICY, NOW)
    assert types(events) == ["ReferralDeclined", "CaseRoutingBlocked"]
    assert r.status == "unassigned"
    assert r.reason is not None
    assert "declined" in r.reason


def test_an_unanswered_offer_expires_after_the_configured_time_and_moves_on() -> None:
    r, _ = routed()
    assert r.referrals[0].expires_at == NOW + timedelta(hours=72)
    assert types(r.tick(PARTNERS, POLICY, NOW + timedelta(hours=71))) == []
    events = r.tick(PARTNERS, POLICY, NOW + timedelta(hours=72))
    assert types(events) == ["ReferralExpired", "ReferralOffered"]
    assert isinstance(events[0], ReferralExpired)
    assert r.referrals[0].status == "expired"
    assert r.referrals[1].partner_organisation_id == "org-hk-2"


def test_expiry_time_is_configurable() -> None:
    policy = Policy(manifest=POLICY.manifest, offer_ttl=timedelta(hours=1))
    r = CaseRouting.new(case(), RULES, NOW)
    r.route(PARTNERS, policy, NOW)
    assert r.referrals[0].expires_at == NOW + timedelta(hours=1)


def test_claims_in_two_jurisdictions_get_a_referral_each() -> None:
    r, events = routed(
        claims=(claim(), claim(ClaimType.EXCESS_PLACEMENT_FEES, "20000000.00", "IDR")),
        share_with=("HK", "ID"),
    )
    offers = [e for e in events if isinstance(e, ReferralOffered)]
    assert {(o.partner_organisation_id, o.country) for o in offers} == {
        ("org-hk-1", "HK"),
        ("org-id-1", "ID"),
    }
    assert {r.jurisdiction: r.claim_indexes for r in r.referrals} == {"HK": (0,), "ID": (1,)}


def test_a_case_is_handed_on_keeping_its_history() -> None:
    r, _ = routed(
        claims=(claim(), claim(ClaimType.EXCESS_PLACEMENT_FEES, "20000000.00", "IDR")),
        share_with=("HK", "ID"),
    )
    hk = r.referrals[0]
    r.accept(hk.id, "org-hk-1", NOW)
    other = Partner("org-id-2", "ID two", "ID")
    events = r.hand_on(hk.id, "org-hk-1", other, [0], "claim against the agency", POLICY, NOW)
    assert types(events) == ["ReferralOffered"]
    new = r.referrals[-1]
    assert (new.partner_organisation_id, new.handed_on_from, new.claim_indexes) == (
        "org-id-2",
        hk.id,
        (0,),
    )
    assert r.referrals[0].status == "accepted"  # the HK lawyer keeps its referral open
    assert len(r.referrals) == 3


def test_each_step_a_lawyer_takes_names_them_in_the_history_and_the_event() -> None:
    r, _ = routed(
        claims=(claim(), claim(ClaimType.EXCESS_PLACEMENT_FEES, "20000000.00", "IDR")),
        share_with=("HK", "ID"),
    )
    rid, lawyer = r.referrals[0].id, "person-lawyer-1"
    steps = [
        r.accept(rid, "org-hk-1", NOW, lawyer),
        r.progress(rid, "org-hk-1", Progress(filed_at_forum=True, at=NOW), NOW),  # an API key
        r.hand_on(
            rid, "org-hk-1", Partner("org-id-2", "ID two", "ID"), [0], "agency", POLICY, NOW, lawyer
        ),
        r.close_referral(rid, "org-hk-1", "settled", [], NOW, lawyer),
    ]
    firsts = [events[0] for events in steps]
    assert [(type(e).__name__, e.model_dump()["by_person_id"]) for e in firsts] == [
        ("ReferralAccepted", lawyer),
        ("ReferralProgressed", None),
        ("ReferralOffered", lawyer),
        ("ReferralClosed", lawyer),
    ]
    assert [(h.status, h.person_id) for h in r.referrals[0].history] == [
        ("offered", None),
        ("accepted", lawyer),
        ("in_progress", None),
        ("closed", lawyer),
    ]
    handed_on = r.referrals[-1].history[0]
    assert (handed_on.status, handed_on.note, handed_on.person_id) == (
        "offered",
        "agency",
        lawyer,
    )
    declined = routed()[0]
    [event, _] = declined.decline(
        declined.referrals[0].id, "org-hk-1", CONFLICT, PARTNERS, POLICY, NOW, lawyer
    )
    assert isinstance(event, ReferralDeclined)
    assert event.by_person_id == lawyer
    assert declined.referrals[0].history[-1].person_id == lawyer


def test_hand_on_needs_consent_for_the_destination() -> None:
    r, _ = routed()
    r.accept(r.referrals[0].id, "org-hk-1", NOW)
    with pytest.raises(TransitionError, match="consent"):
        r.hand_on(r.referrals[0].id, "org-hk-1", ID1, [0], "x", POLICY, NOW)


def test_only_the_callers_own_claims_are_handed_on_and_never_to_itself() -> None:
    r, _ = routed(
        claims=(claim(), claim(ClaimType.EXCESS_PLACEMENT_FEES, "20000000.00", "IDR")),
        share_with=("HK", "ID"),
    )
    hk = r.referrals[0]  # holds claim 0 only; claim 1 was offered to org-id-1
    r.accept(hk.id, "org-hk-1", NOW)
    other = Partner("org-id-2", "ID two", "ID")
    with pytest.raises(TransitionError, match="not part of this referral"):
        r.hand_on(hk.id, "org-hk-1", other, [1], "pull the other claim", POLICY, NOW)
    with pytest.raises(TransitionError, match="not part of this referral"):
        r.hand_on(hk.id, "org-hk-1", other, [0, 7], "an unknown claim", POLICY, NOW)
    with pytest.raises(TransitionError, match="holding it"):
        r.hand_on(hk.id, "org-hk-1", HK1, [0], "to myself", POLICY, NOW)
    # Pulling another partner's claim to itself: its own referral holds no such claim.
    with pytest.raises(TransitionError):
        r.hand_on(hk.id, "org-hk-1", HK1, [1], "take it", POLICY, NOW)
    assert len(r.referrals) == 2
    assert [e.status for e in r.referrals] == ["accepted", "offered"]


def test_a_closed_referral_shares_personal_data_only_for_the_retention() -> None:
    r, _ = routed()
    rid = r.referrals[0].id
    r.accept(rid, "org-hk-1", NOW)
    keep = timedelta(days=30)
    assert r.referrals[0].shares_personal_data(NOW, keep)
    r.close_referral(rid, "org-hk-1", "settled", [], NOW + timedelta(days=1))
    closed = r.referrals[0]
    assert closed.shared_until(keep) == NOW + timedelta(days=31)
    assert closed.shares_personal_data(NOW + timedelta(days=30), keep)
    assert not closed.shares_personal_data(NOW + timedelta(days=31), keep)
    assert not closed.shares_personal_data(NOW + timedelta(days=1), timedelta(0))
    withdrawn, _ = routed()
    withdrawn.accept(withdrawn.referrals[0].id, "org-hk-1", NOW)
    withdrawn.close_case(NOW)
    assert withdrawn.referrals[0].status == "withdrawn"
    assert not withdrawn.referrals[0].shares_personal_data(NOW, keep)
    assert withdrawn.referrals[0].shared_until(keep) is None


def test_an_uncovered_claim_is_unassigned_with_its_reason() -> None:
    _r, events = routed(
        country="SG",
        sector=Sector.DOMESTIC_WORK,
        claims=(claim(ClaimType.WORK_INJURY, None),),
        share_with=("SG",),
    )
    [blocked] = events
    assert isinstance(blocked, CaseRoutingBlocked)
    assert blocked.status == "unassigned"
    assert "SG-WICA" in blocked.reason


def test_reminders_30_7_1_days_before_each_deadline_exactly_once() -> None:
    r, _ = routed(claims=(claim(ClaimType.WORK_INJURY, None, arose_on=date(2025, 10, 20)),))
    deadline = date(2027, 10, 20)
    assert r.claims[0].deadline is not None
    assert r.claims[0].deadline.date == deadline
    r.accept(r.referrals[0].id, "org-hk-1", NOW)
    sent: list[int] = []
    for days in range(40, -1, -1):
        at = datetime(2027, 10, 20, 0, 0, tzinfo=UTC) - timedelta(days=days) + timedelta(hours=1)
        for e in r.tick(PARTNERS, POLICY, at):
            assert isinstance(e, DeadlineApproaching)
            assert (e.forum_code, e.deadline, e.referral_id) == (
                "HK-ECO-DC",
                deadline,
                r.referrals[0].id,
            )
            sent.append(e.days_before)
    assert sent == [30, 7, 1]


def test_closing_the_case_withdraws_and_stops_reminders() -> None:
    r, _ = routed()
    events = r.close_case(NOW)
    assert types(events) == ["ReferralWithdrawn"]
    assert r.status == "closed"
    assert r.next_due_at is None
    assert r.tick(PARTNERS, POLICY, datetime(2027, 8, 30, tzinfo=UTC)) == []


def test_erasure_drops_every_sealed_field() -> None:
    r, _ = routed()
    r.erase(NOW)
    assert "enc:v1:" not in r.model_dump_json()
    assert r.referrals[0].status == "withdrawn"


def test_a_corrected_amount_reroutes_the_claim_and_moves_its_reminders() -> None:
    r, _ = routed()
    assert r.claims[0].forum is not None
    assert r.claims[0].forum.code == "HK-MECAB"
    old = {m.deadline for m in r.reminders}
    assert old == {date(2032, 8, 31)}
    corrected = case(claims=(claim(value="20000.00", arose_on=date(2026, 7, 31)),))
    events = r.correct(
        CaseDetailsCorrected(case_id="case-1", claims=corrected.claims, corrected_at=NOW),
        RULES,
        PARTNERS,
        POLICY,
        NOW,
    )
    assert events == []  # the open referral stays with its partner
    assert r.claims[0].forum is not None
    assert r.claims[0].forum.code == "HK-LT"
    states = {(m.deadline, m.state) for m in r.reminders}
    assert states == {(date(2032, 8, 31), "cancelled"), (date(2032, 7, 31), "scheduled")}

"""The lawyers' pages: the shared case shown field by field, deadlines by date, the
unverified mark, forms to API bodies, and what the browser tests look for (unit tier)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from lintas_console.adapters.services_api import FieldProblem
from lintas_console.entrypoints.pages_referrals import (
    Shown,
    actions_for,
    close_body,
    deadline_rows,
    hand_on_body,
    inbox_filter,
    nearest_deadline,
    progress_body,
    shared_view,
    sort_inbox,
    typed_values,
    unverified,
    webhook_messages,
)
from lintas_console.entrypoints.vocabulary import CURRENCIES, labels
from lintas_console.entrypoints.web import build_templates
from lintas_console.i18n import LANGUAGE_NAMES, Translator, load_catalogs
from lintas_shared.person_tokens import Role
from starlette.requests import Request

pytestmark = pytest.mark.unit


def _same(message: str) -> str:
    return message


def _claim(
    index: int,
    on: str | None,
    *,
    verified: bool = True,
    claim_type: str = "unpaid_wages",
) -> dict[str, Any]:
    return {
        "claim_index": index,
        "claim_type": claim_type,
        "status": "routed",
        "forum": {"code": "HK-LT", "name": "Labour Tribunal", "verified": True},
        "deadline": {"date": on, "basis": "rule", "verified": verified} if on else None,
        "deadline_note": None if on else "the date the claim arose is not known",
        "verified": verified,
    }


def _referral(rid: str, status: str, *claims: dict[str, Any], ref: str = "") -> dict[str, Any]:
    return {
        "id": rid,
        "case_reference": ref or f"LB-{rid.upper()}",
        "status": status,
        "country": "HK",
        "offered_at": "2026-01-01T00:00:00Z",
        "expires_at": "2026-01-04T00:00:00Z",
        "claims": list(claims),
        "history": [],
    }


SHARED = {
    "worker": {"full_name": "Siti Aminah", "phone": "+85291234567", "current_country": "HK"},
    "employment": {"started_on": "2023-01-02", "ended_on": None, "placement_agency": ""},
    "claims": [
        {"type": "unpaid_wages", "amount": {"currency": "HKD", "value": "12400.00"}},
        {"type": "abuse", "amount": None, "claimants": 1},
    ],
}


def _leaves(items: tuple[Shown, ...]) -> set[str]:
    out: set[str] = set()
    for item in items:
        out |= _leaves(item.children) if item.kind == "group" else {item.path}
    return out


# --- the shared case ------------------------------------------------------------------------


def test_the_shared_view_holds_exactly_the_keys_the_api_gave() -> None:
    shown = shared_view(SHARED, _same)
    assert [s.path for s in shown] == ["worker", "employment", "claims"]
    assert _leaves(shown) == {
        "worker.full_name",
        "worker.phone",
        "worker.current_country",
        "employment.started_on",
        "employment.ended_on",
        "employment.placement_agency",
        "claims[0].type",
        "claims[0].amount",
        "claims[1].type",
        "claims[1].amount",
        "claims[1].claimants",
    }


def test_each_value_is_shown_by_its_kind() -> None:
    worker, employment, claims = shared_view(SHARED, _same)
    assert worker.label == "Worker"
    name, _phone, country = worker.children
    assert (name.kind, name.text, name.label) == ("text", "Siti Aminah", "Full name")
    assert (country.kind, country.vocabulary, country.text) == ("code", "country", "HK")
    started, ended, agency = employment.children
    assert (started.kind, started.text) == ("date", "2023-01-02")
    assert ended.kind == agency.kind == "empty"
    first, second = claims.children
    assert (first.label, second.label) == ("Claim 1", "Claim 2")
    kind, amount = first.children
    assert (kind.kind, kind.vocabulary) == ("code", "claim_type")
    # Money stays the API's decimal string with its currency; never a float.
    assert (amount.kind, amount.text, amount.currency) == ("money", "12400.00", "HKD")
    assert [c.kind for c in second.children] == ["code", "empty", "text"]


def test_unknown_fields_keep_their_own_name_and_nothing_is_added() -> None:
    shown = shared_view({"worker": {"shoe_size": 38, "is_minor": False}}, _same)
    (worker,) = shown
    size, minor = worker.children
    assert (size.label, size.kind, size.text) == ("Shoe size", "text", "38")
    assert (minor.kind, minor.text) == ("yes_no", "no")
    assert shared_view(None, _same) == ()
    assert shared_view({}, _same) == ()


def test_field_labels_are_translated() -> None:
    translator = Translator(load_catalogs())
    translator.use("id")
    (_worker, _employment, claims) = shared_view(SHARED, translator.gettext)
    assert claims.children[0].label == "Tuntutan 1"
    translator.use("en")


# --- claims and deadlines -------------------------------------------------------------------


def test_a_claim_is_unverified_when_its_rule_forum_or_deadline_is() -> None:
    assert not unverified(_claim(0, "2026-05-01"))
    assert unverified(_claim(0, "2026-05-01", verified=False))
    forum_only = _claim(0, "2026-05-01") | {"forum": {"code": "X", "name": "X", "verified": False}}
    assert unverified(forum_only)
    deadline_only = _claim(0, None) | {
        "deadline": {"date": "2026-05-01", "basis": "b", "verified": False}
    }
    assert unverified(deadline_only)
    assert not unverified({"claim_index": 0})


def test_deadlines_nearest_first_across_open_referrals_only() -> None:
    referrals = [
        _referral("a", "accepted", _claim(0, "2026-09-01"), _claim(1, None, claim_type="abuse")),
        _referral("b", "offered", _claim(0, "2026-03-01", verified=False)),
        _referral("c", "in_progress", _claim(2, "2026-06-15")),
        _referral("d", "closed", _claim(0, "2026-01-01")),
        _referral("e", "declined", _claim(0, "2026-02-01")),
    ]
    dated, undated = deadline_rows(referrals, today=date(2026, 3, 3))
    assert [(r.referral_id, r.on) for r in dated] == [
        ("b", date(2026, 3, 1)),
        ("c", date(2026, 6, 15)),
        ("a", date(2026, 9, 1)),
    ]
    assert [r.days_left for r in dated] == [-2, 104, 182]
    assert [r.unverified for r in dated] == [True, False, False]
    assert dated[0].forum_name == "Labour Tribunal"
    assert [(r.referral_id, r.claim_type, r.note) for r in undated] == [
        ("a", "abuse", "the date the claim arose is not known")
    ]


def test_the_inbox_puts_the_nearest_deadline_first_and_none_last() -> None:
    late = _referral("late", "accepted", _claim(0, "2027-01-01"))
    none = _referral("none", "offered", _claim(0, None))
    soon = _referral("soon", "offered", _claim(0, "2026-12-01"), _claim(1, "2026-04-01"))
    assert nearest_deadline(soon) == date(2026, 4, 1)
    assert nearest_deadline(none) is None
    assert [r["id"] for r in sort_inbox([late, none, soon])] == ["soon", "late", "none"]


def test_the_inbox_filter_is_a_tab_or_a_status_of_the_api() -> None:
    assert inbox_filter(None) == "open"
    assert inbox_filter("") == "open"
    assert inbox_filter("offered") == "offered"
    assert inbox_filter("closed") == "closed"
    assert inbox_filter("all") == "all"
    assert inbox_filter("handed_on") == "open"  # a label, not a status the API filters by
    assert inbox_filter("<script>") == "open"


def test_forms_are_offered_only_where_they_make_sense() -> None:
    assert actions_for("offered") == {"accept", "decline"}
    assert actions_for("accepted") == actions_for("in_progress") == {"progress", "close", "hand_on"}
    for status in ("declined", "expired", "withdrawn", "closed"):
        assert actions_for(status) == frozenset()


# --- forms to API bodies ----------------------------------------------------------------------


def test_progress_unticked_boxes_are_false_and_empty_fields_left_out() -> None:
    assert progress_body([("csrf_token", "t"), ("hearing_on", ""), ("note", "  ")]) == {
        "filed_at_forum": False,
        "documents_needed": False,
    }
    assert progress_body(
        [("filed_at_forum", "true"), ("hearing_on", "2027-01-15"), ("note", " Filed. ")]
    ) == {
        "filed_at_forum": True,
        "documents_needed": False,
        "hearing_on": "2027-01-15",
        "note": "Filed.",
    }


def test_close_sends_an_amount_only_when_one_is_typed() -> None:
    base = [("csrf_token", "t"), ("outcome", "settled"), ("amounts_recovered[0].currency", "HKD")]
    assert close_body([*base, ("amounts_recovered[0].value", "")]) == {
        "outcome": "settled",
        "amounts_recovered": [],
    }
    assert close_body([*base, ("amounts_recovered[0].value", "12400.00")]) == {
        "outcome": "settled",
        "amounts_recovered": [{"currency": "HKD", "value": "12400.00"}],
    }


def test_hand_on_sends_the_ticked_claims_by_index() -> None:
    pairs = [
        ("csrf_token", "t"),
        ("to_partner_id", " org-demo-legal-sg "),
        ("claim_indexes", "2"),
        ("claim_indexes", "0"),
        ("claim_indexes", "x"),
        ("reason", "Belongs in Singapore"),
    ]
    assert hand_on_body(pairs) == {
        "to_partner_id": "org-demo-legal-sg",
        "claim_indexes": [0, 2],
        "reason": "Belongs in Singapore",
    }
    assert hand_on_body([("csrf_token", "t")]) == {"claim_indexes": []}
    assert typed_values(pairs, multi=("claim_indexes",))["claim_indexes"] == "2,0,x"
    assert "csrf_token" not in typed_values(pairs)


def test_a_refused_webhook_url_is_said_plainly() -> None:
    refused = [FieldProblem("url", "url must be https://", "value_error")]
    assert webhook_messages(refused, _same)["url"].startswith("This address cannot receive")
    missing = [FieldProblem("url", "Field required", "missing")]
    assert webhook_messages(missing, _same) == {"url": "This field is required."}


# --- what the browser tests look for ----------------------------------------------------------


def _page(
    language: str, status: str, claim: dict[str, Any] | None = None, *, shared: bool = True
) -> str:
    translator = Translator(load_catalogs())
    translator.use(language)
    claim = claim or _claim(0, "2026-05-01", verified=False)
    referral = _referral("r1", status, claim) | {
        "handed_on_from": None,
        "erased": False,
        "handoff": {
            "legal_basis": "Consent",
            "purpose": "legal_referral",
            "recipient_organisation_id": "org-demo-legal-hk",
            "recipient_country": "HK",
            "consent_id": "c1",
            "fields": ["worker.full_name"],
        },
        "shared": {"worker": {"full_name": "Siti Aminah"}} if shared else None,
    }
    request = Request({"type": "http", "method": "GET", "path": "/referrals/r1", "headers": []})
    page: str = (
        build_templates(translator)
        .get_template("referrals/referral.html")
        .render(
            request=request,
            visitor=None,
            person=None,
            csrf_token="t",
            language=language,
            roles=Role,
            L=labels(translator.gettext),
            CURRENCIES=CURRENCIES,
            LANGUAGE_NAMES=LANGUAGE_NAMES,
            referral=referral,
            shared=shared_view(referral["shared"], translator.gettext),
            names={},
            deliveries=None,
            actions=actions_for(status),
            unverified=unverified,
            close_defaults={},
            values={},
            errors={},
            section=None,
            done=None,
            unavailable=False,
            refused=None,
        )
    )
    translator.use("en")
    return page


@pytest.mark.parametrize(
    ("language", "accept", "offered"), [("en", "Accept", "Offered"), ("id", "Terima", "Ditawarkan")]
)
def test_the_referral_page_has_what_the_browser_tests_look_for(
    language: str, accept: str, offered: str
) -> None:
    page = _page(language, "offered")
    assert f'data-testid="referral-status">{offered}</span>' in page
    assert f'<button type="submit" data-testid="accept">{accept}</button>' in page
    shared = page.split('data-testid="shared-fields">')[1].split("</section>")[0]
    assert "Siti Aminah" in shared
    assert 'data-testid="unverified"' in page


@pytest.mark.parametrize(
    ("language", "said"), [("en", "no longer shared"), ("id", "tidak lagi dibagikan")]
)
def test_a_closed_referral_past_its_retention_says_it_is_no_longer_shared(
    language: str, said: str
) -> None:
    page = _page(language, "closed", shared=False)
    shared = page.split('data-testid="shared-fields">')[1].split("</section>")[0]
    assert 'data-testid="no-longer-shared"' in shared
    assert said in shared
    assert "Siti Aminah" not in page


def test_an_accepted_referral_offers_progress_close_and_hand_on_not_accept() -> None:
    page = _page("en", "accepted")
    assert 'data-testid="accept"' not in page
    for action in ("progress", "close", "hand_on"):
        assert f'action="/referrals/r1/{action}"' in page


PASSED = _claim(0, "2026-01-10") | {
    "deadline_passed": True,
    "late_filing": "ECO s.14(4): the court may allow a later claim with a reasonable excuse.",
    "warnings": ["The filing deadline passed on 2026-01-10."],
    "alternatives": [{"code": "HK-SCT", "name": "Small Claims Tribunal", "verified": False}],
}
UNCOMPARABLE = _claim(0, "2032-08-31", verified=False) | {
    "missing_facts": ["the amount per claimant in HKD (given in IDR)"],
    "warnings": ["Unverified: routing is missing the amount per claimant in HKD (given in IDR)."],
}


@pytest.mark.parametrize(
    ("language", "passed"),
    [("en", "Deadline passed on 10 Jan 2026"), ("id", "Batas waktu sudah lewat pada 10 Jan 2026")],
)
def test_a_passed_deadline_shows_the_date_and_the_late_filing_route(
    language: str, passed: str
) -> None:
    page = _page(language, "offered", PASSED)
    assert passed in page
    assert "s.14(4)" in page.split('data-testid="late-filing">')[1]
    assert "Small Claims Tribunal" in page.split('data-testid="alternatives">')[1]
    inbox_rows, _ = deadline_rows([_referral("r1", "offered", PASSED)], today=date(2026, 9, 16))
    assert inbox_rows[0].passed
    assert inbox_rows[0].late_filing.startswith("ECO s.14(4)")


def test_an_unverified_routing_names_the_missing_fact() -> None:
    page = _page("en", "offered", UNCOMPARABLE)
    note = page.split('data-testid="unverified">')[1].split("</p>")[0]
    assert "Missing: the amount per claimant in HKD (given in IDR)." in note
    rows, _ = deadline_rows([_referral("r1", "offered", UNCOMPARABLE)], today=date(2026, 9, 16))
    assert rows[0].missing == "the amount per claimant in HKD (given in IDR)"
    assert not rows[0].passed

"""The console in a real browser (Debian's Chromium) on the real stack: a caseworker
submits the issue-2 example case and sees it referred; the Hong Kong lawyer sees only the
manifest's fields and accepts; the caseworker's timeline names that lawyer. Errors in
Bahasa Indonesia beside their field, drafts that survive a reload, one case for a double
submit, another partner's referral not found, CSRF, expired sessions, axe on every page
and the weight of each page."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyotp
import pytest
from lintas_shared.case_rows import EXAMPLE_ROW
from lintas_shared.mongo import make_mongo_client
from playwright.async_api import Page

from tests.e2e.conftest import Stack
from tests.support.console import (
    PAGE_BUDGET_BYTES,
    SCREENSHOTS,
    axe_violations,
    fill_case_form,
    screenshot,
    sign_in,
    wait_for_text,
    weigh,
)
from tests.support.fixtures import recent_example_case
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e
REFERRED = r"Dirujuk|Referred|Diterima|Accepted"


def example_case() -> dict[str, Any]:
    """The issue-2 example with its own external_ref (intake refuses a reused one), dated
    relative to today as the stack routes by today's date."""
    case = recent_example_case()  # the same document as intake's EXAMPLE_SUBMISSION
    case["external_ref"] = f"NGO-LPG-{uuid.uuid4().hex[:10]}"
    return case


def _cases_with_ref(stack: Stack, external_ref: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{stack.urls['intake']}/v1/cases",
        params={"external_ref": external_ref},
        headers={"X-API-Key": stack.keys["ngo_id"]},
        timeout=10,
    )
    answer.raise_for_status()
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def _display_name(servers: Servers, stack: Stack, email: str) -> str:
    client = make_mongo_client(servers.mongodb_uri, app_name="e2e-console")
    try:
        doc = await client[stack.databases["console"]]["people"].find_one({"email": email})
    finally:
        await client.close()
    assert doc is not None
    return str(doc["display_name"])


async def _submit_example(page: Page, stack: Stack, case: dict[str, Any]) -> str:
    await page.goto(f"{stack.urls['console']}/cases/new")
    await fill_case_form(page, case)
    await page.click('button[name="action"][value="submit"]')
    await page.wait_for_url(re.compile(r"/cases/[0-9a-f-]{36}\?created=1"))
    return page.url.split("/cases/")[1].split("?")[0]


async def test_a_case_goes_from_the_caseworker_to_the_lawyer_and_back(
    page: Page, stack: Stack, servers: Servers
) -> None:
    console = stack.urls["console"]
    case = example_case()
    await sign_in(page, console, stack.people["caseworker"])
    case_id = await _submit_example(page, stack, case)
    await wait_for_text(page, '[data-testid="case-status"]', REFERRED)
    await screenshot(page, "case")
    reference = (await page.inner_text("h1")).split()[1]
    assert reference.startswith("LB-")

    # The Hong Kong lawyer: the referral in the inbox, only the manifest's fields, accept.
    lawyer = await page.context.browser.new_context()  # type: ignore[union-attr]
    try:
        lawyer_page = await lawyer.new_page()
        await sign_in(lawyer_page, console, stack.people["lawyer_hk"])
        await lawyer_page.goto(f"{console}/referrals")
        await screenshot(lawyer_page, "referrals")
        await lawyer_page.click(f"text={reference}")
        referral_url = lawyer_page.url
        shared = await lawyer_page.inner_text('[data-testid="shared-fields"]')
        assert case["worker"]["full_name"] in shared
        assert case["employment"]["employer_name"] in shared
        page_text = await lawyer_page.inner_text("main")
        # Outside the manifest: date of birth, home region, passport.
        assert "Lampung Timur" not in page_text
        assert "1994" not in page_text
        await screenshot(lawyer_page, "referral")
        assert await axe_violations(lawyer_page) == []
        await lawyer_page.get_by_role("button", name=re.compile(r"^(Accept|Terima)$")).click()
        await wait_for_text(lawyer_page, '[data-testid="referral-status"]', r"Accepted|Diterima")
    finally:
        await lawyer.close()

    # The caseworker's timeline names the lawyer who accepted.
    lawyer_name = await _display_name(servers, stack, stack.people["lawyer_hk"]["email"])
    await page.goto(f"{console}/cases/{case_id}")
    await wait_for_text(page, '[data-testid="timeline"]', re.escape(lawyer_name))

    # The Singapore lawyer gets the not-found page for the Hong Kong referral.
    singapore = await page.context.browser.new_context()  # type: ignore[union-attr]
    try:
        sg_page = await singapore.new_page()
        await sign_in(sg_page, console, stack.people["lawyer_sg"])
        answer = await sg_page.goto(referral_url)
        assert answer is not None
        assert answer.status == 404
        assert case["worker"]["full_name"] not in await sg_page.content()
    finally:
        await singapore.close()


async def test_a_bad_phone_number_is_named_beside_its_field_in_bahasa_indonesia(
    page: Page, stack: Stack
) -> None:
    case = example_case()
    case["worker"]["phone"] = "12345"
    await sign_in(page, stack.urls["console"], stack.people["caseworker"])
    await page.goto(f"{stack.urls['console']}/cases/new")
    await fill_case_form(page, case)
    await page.click('button[name="action"][value="submit"]')
    error = page.locator("#f-worker-phone-error")
    assert "Nomor telepon tidak valid" in await error.inner_text()
    assert await page.get_attribute("#f-worker-phone", "aria-invalid") == "true"
    # What was typed is still there, and nothing was stored.
    assert await page.input_value('[name="worker.full_name"]') == case["worker"]["full_name"]
    assert _cases_with_ref(stack, case["external_ref"]) == []
    await screenshot(page, "new-case-error")


async def test_the_draft_survives_a_reload_and_is_cleared_at_sign_out(
    page: Page, stack: Stack
) -> None:
    await sign_in(page, stack.urls["console"], stack.people["caseworker"])
    await page.goto(f"{stack.urls['console']}/cases/new")
    await page.fill('[name="external_ref"]', "DRAFT-1")
    await page.fill('[name="worker.full_name"]', "Draf Pekerja")
    await page.select_option('[name="employment.country"]', "HK")
    await page.reload()
    assert await page.input_value('[name="worker.full_name"]') == "Draf Pekerja"
    assert await page.input_value('[name="external_ref"]') == "DRAFT-1"
    assert await page.input_value('[name="employment.country"]') == "HK"
    await page.click("form[data-sign-out] button")
    await page.wait_for_url(re.compile("/sign-in"))
    drafts = await page.evaluate(
        "Object.keys(localStorage).filter(k => k.startsWith('lintas-draft:'))"
    )
    assert drafts == []


async def test_a_double_submit_makes_one_case(page: Page, stack: Stack) -> None:
    case = example_case()
    await sign_in(page, stack.urls["console"], stack.people["caseworker"])
    await page.goto(f"{stack.urls['console']}/cases/new")
    await fill_case_form(page, case)
    # The same form sent twice at once, as a double click on a slow line would.
    landed = await page.evaluate(
        """async () => {
            const data = new FormData(document.getElementById('new-case'));
            data.set('action', 'submit');
            const body = new URLSearchParams(data);
            const send = () => fetch('/cases/new', {method: 'POST', body});
            const answers = await Promise.all([send(), send()]);
            return answers.map(a => [a.status, a.url]);
        }"""
    )
    assert [status for status, _url in landed] == [200, 200]
    assert landed[0][1] == landed[1][1]
    assert len(_cases_with_ref(stack, case["external_ref"])) == 1


async def test_a_form_without_its_csrf_token_is_refused(page: Page, stack: Stack) -> None:
    case = example_case()
    await sign_in(page, stack.urls["console"], stack.people["caseworker"])
    answer = await page.request.post(
        f"{stack.urls['console']}/cases/new",
        form={"external_ref": case["external_ref"], "action": "submit"},
    )
    assert answer.status == 403
    assert "Formulir kedaluwarsa" in await answer.text()
    assert _cases_with_ref(stack, case["external_ref"]) == []


async def test_an_expired_session_returns_to_sign_in(
    page: Page, stack: Stack, servers: Servers
) -> None:
    await sign_in(page, stack.urls["console"], stack.people["caseworker"])
    person_email = stack.people["caseworker"]["email"]
    client = make_mongo_client(servers.mongodb_uri, app_name="e2e-console")
    try:
        database = client[stack.databases["console"]]
        person = await database["people"].find_one({"email": person_email})
        assert person is not None
        # Idle for 31 minutes: the session of this browser (and any other of this person).
        await database["sessions"].update_many(
            {"person_id": person["_id"]},
            {"$set": {"last_seen_at": datetime.now(UTC) - timedelta(minutes=31)}},
        )
    finally:
        await client.close()
    await page.goto(f"{stack.urls['console']}/cases")
    assert "/sign-in" in page.url
    assert await page.locator('input[name="password"]').count() == 1


#: Every page of the console, by the person who sees it.
PAGES = {
    "caseworker": ["/cases", "/cases/new"],
    "lawyer_hk": ["/referrals", "/deadlines", "/webhook"],
    "programme": ["/indicators", "/imports"],
    "org_admin": ["/people"],
}


async def test_every_page_passes_axe_and_stays_within_its_weight(page: Page, stack: Stack) -> None:
    console = stack.urls["console"]
    report: dict[str, Any] = {}
    failures: dict[str, Any] = {}

    async def check(name: str) -> None:
        violations = await axe_violations(page)
        if violations:
            failures[name] = violations
        weight = await weigh(page, page.url)
        report[name] = {"bytes": weight.total, "files": len(weight.sizes)}
        third_party = [u for u in weight.sizes if not u.startswith(console)]
        assert third_party == [], f"{name} fetched {third_party}"
        assert weight.total <= PAGE_BUDGET_BYTES, f"{name}: {weight.total} bytes"
        # Usable on a 360 px screen: nothing wider than it (tables scroll in their box).
        assert await page.evaluate("document.documentElement.scrollWidth") <= 360, name

    await page.set_viewport_size({"width": 360, "height": 740})
    await page.goto(f"{console}/sign-in")
    await check("sign-in")
    await screenshot(page, "sign-in")
    case = example_case()
    for who, paths in PAGES.items():
        await page.context.clear_cookies()
        await sign_in(page, console, stack.people[who])
        for path in paths:
            await page.goto(f"{console}{path}")
            await check(f"{who} {path}")
            await screenshot(page, f"{who}-{path.strip('/').replace('/', '-')}")
        if who == "caseworker":
            case_id = await _submit_example(page, stack, case)
            await check("caseworker case")
            await page.goto(f"{console}/cases/{case_id}/consent-sheet")
            await check("caseworker consent sheet")
            await page.goto(f"{console}/cases/{uuid.uuid4()}")
            await check("not found")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "page-weight.json").write_text(json.dumps(report, indent=2))
    print("\npage weight (bytes, uncompressed HTML+CSS+JS):", json.dumps(report, indent=1))
    assert failures == {}


async def test_an_invited_person_sets_a_password_and_a_second_factor(
    page: Page, stack: Stack
) -> None:
    """The org-admin invites; the one-time link sets a password; the person enrols an
    authenticator and is asked for its code at the next sign-in. axe checks the pages
    on the way (welcome, account, second factor)."""
    console = stack.urls["console"]
    email = f"relawan-{uuid.uuid4().hex[:8]}@demo.lintas.test"
    await sign_in(page, console, stack.people["org_admin"])
    await page.goto(f"{console}/people")
    await page.fill('[name="email"]', email)
    await page.fill('[name="display_name"]', "Relawan Desa")
    await page.select_option('[name="role"]', "caseworker")
    await page.click('form[action="/people"] button[type="submit"]')
    link = (await page.inner_text('[data-testid="one-time-link"]')).strip()
    assert link.startswith(f"{console}/welcome/")
    await page.context.clear_cookies()

    password = "kata-sandi-yang-panjang"
    await page.goto(link)
    assert await axe_violations(page) == []
    await page.fill('[name="password"]', password)
    await page.fill('[name="password_again"]', password)
    await page.click('main form button[type="submit"]')
    await page.wait_for_url(re.compile("/sign-in"))
    # The link works once.
    again = await page.goto(link)
    assert again is not None
    await page.fill('[name="password"]', "another-long-password")
    await page.fill('[name="password_again"]', "another-long-password")
    await page.click('main form button[type="submit"]')
    assert "/welcome/" in page.url
    assert await page.locator(".error-box").count() == 1

    person = {"email": email, "password": password}
    await sign_in(page, console, person)
    await page.goto(f"{console}/account")
    await page.click('form[action="/account/second-factor"] button')
    secret = (await page.inner_text('[data-testid="totp-secret"]')).strip()
    assert await axe_violations(page) == []
    await page.fill('[name="code"]', pyotp.TOTP(secret).now())
    await page.click('form[action="/account/second-factor/confirm"] button')
    assert await page.inner_text('[data-testid="second-factor"]') in ("aktif", "set up")

    await page.click("form[data-sign-out] button")
    await page.wait_for_url(re.compile("/sign-in"))
    await page.fill('input[name="email"]', email)
    await page.fill('input[name="password"]', password)
    await page.click('form[action="/sign-in"] button[type="submit"]')
    await page.wait_for_url(re.compile("/second-factor"))
    assert await axe_violations(page) == []
    # Without the code, no page opens.
    await page.goto(f"{console}/cases")
    assert "/second-factor" in page.url
    await page.fill('[name="code"]', "000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    await page.click('main form button[type="submit"]')
    assert await page.locator(".error-box").count() == 1
    await page.fill('[name="code"]', pyotp.TOTP(secret).now())
    await page.click('main form button[type="submit"]')
    await page.wait_for_url(re.compile("/cases"))


async def test_a_bulk_import_by_upload_shows_progress_and_reports_each_refused_row(
    page: Page, stack: Stack
) -> None:
    refs = [f"IMP-{uuid.uuid4().hex[:10]}" for _ in range(3)]
    rows = [{**EXAMPLE_ROW, "external_ref": ref, "consent_taken_by": ""} for ref in refs]
    rows[2]["worker_phone"] = "99887"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(EXAMPLE_ROW))
    writer.writeheader()
    writer.writerows(rows)
    await sign_in(page, stack.urls["console"], stack.people["programme"])
    await page.goto(f"{stack.urls['console']}/imports")
    await page.set_input_files(
        '[name="file"]',
        files=[{"name": "cases.csv", "mimeType": "text/csv", "buffer": out.getvalue().encode()}],
    )
    await page.click('main form[action="/imports"] button[type="submit"]')
    await page.wait_for_url(re.compile(r"/imports/[^/]+$"))
    await wait_for_text(page, '[data-testid="import-finished"]', r"\S")
    assert await page.inner_text('[data-testid="import-created"]') == "2"
    assert await page.inner_text('[data-testid="import-refused"]') == "1"
    report_url = await page.get_attribute('[data-testid="import-errors-csv"]', "href")
    assert report_url is not None
    report = await page.request.get(f"{stack.urls['console']}{report_url}")
    text = await report.text()
    assert "worker.phone" in text
    assert "99887" not in text  # the row's values never reach the report
    assert "Contoh Pekerja" not in text
    assert [len(_cases_with_ref(stack, ref)) for ref in refs] == [1, 1, 0]


async def test_the_core_flow_works_with_javascript_off(page: Page, stack: Stack) -> None:
    """Sign in, submit a case, add a claim, record a note, sign out: all plain HTML forms."""
    browser = page.context.browser
    assert browser is not None
    context = await browser.new_context(java_script_enabled=False)
    try:
        plain = await context.new_page()
        console = stack.urls["console"]
        await sign_in(plain, console, stack.people["caseworker"])
        await plain.goto(f"{console}/cases/new")
        case = example_case()
        await fill_case_form(plain, case)
        # "Add another claim" is a submit button: the server answers with two claims.
        await plain.click('button[name="action"][value="add_claim"]')
        assert await plain.locator('[name="claims[1].type"]').count() == 1
        assert await plain.input_value('[name="worker.full_name"]') == case["worker"]["full_name"]
        await plain.click('button[name="action"][value="submit"]')
        await plain.wait_for_url(re.compile(r"/cases/[0-9a-f-]{36}\?created=1"))
        await plain.fill('[name="text"]', "Pekerja menelepon.")
        await plain.click('form[action$="/notes"] button[type="submit"]')
        assert "Pekerja menelepon." in await plain.inner_text("#notes")
        await plain.click("form[data-sign-out] button")
        await plain.wait_for_url(re.compile("/sign-in"))
    finally:
        await context.close()


def test_the_example_typed_into_the_form_is_the_issue_2_example() -> None:
    from lintas_intake.entrypoints.examples import EXAMPLE_SUBMISSION

    from tests.support.fixtures import EXAMPLE_CASE

    assert EXAMPLE_CASE == EXAMPLE_SUBMISSION

"""The caseworker's pages when intake does not answer: a clear message, and what was typed
still in the form (unit tier: the pages in-process, intake a closed port)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from lintas_console.adapters.services_api import service_client
from lintas_console.domain.people import Person, Role
from lintas_console.entrypoints import pages_cases
from lintas_console.entrypoints.forms import nest
from lintas_shared.person_tokens import INTAKE_AUDIENCE, REFERRAL_AUDIENCE, new_signing_key

from services.console.tests.fakes import pages_app

pytestmark = pytest.mark.unit
CASEWORKER = Person("person-cw", "org-ngo", "cw@ngo.test", Role.CASEWORKER, "Sari")


def _closed_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def console() -> AsyncIterator[httpx.AsyncClient]:
    key, _public = new_signing_key()
    nowhere = f"http://127.0.0.1:{_closed_port()}"
    intake = service_client("intake", nowhere, INTAKE_AUDIENCE, key, timeout=2)
    referral = service_client("referral", nowhere, REFERRAL_AUDIENCE, key, timeout=2)
    app = pages_app([pages_cases.router], CASEWORKER, intake, referral, language="id")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as client:
        yield client
    await intake.close()
    await referral.close()


async def test_a_new_case_sent_while_intake_is_down_keeps_what_was_typed(
    console: httpx.AsyncClient,
) -> None:
    form = {
        "csrf_token": "csrf-1",
        "idempotency_key": "key-1",
        "claim_count": "1",
        "action": "submit",
        "external_ref": "NGO-LPG-1",
        "worker.full_name": "Contoh Pekerja",
        "worker.phone": "+6281234567890",
        "claims[0].amount.value": "12000.00",
    }
    page = await console.post("/cases/new", data=form)
    assert page.status_code == 503
    assert "Lintas tidak bisa menghubungi layanan kasus saat ini" in page.text
    assert 'value="Contoh Pekerja"' in page.text
    assert 'value="12000.00"' in page.text
    # The same Idempotency-Key goes out again with the next try: still one case.
    assert 'name="idempotency_key" value="key-1"' in page.text


async def test_the_new_case_form_asks_the_washington_group_questions_as_optional(
    console: httpx.AsyncClient,
) -> None:
    html = (await console.get("/cases/new")).text
    assert "Fungsi tubuh (pertanyaan Washington Group), hanya dengan persetujuan pekerja" in html
    for domain in ("seeing", "hearing", "walking", "remembering", "self_care", "communicating"):
        assert f'name="worker.functioning.{domain}"' in html
    assert html.count('<option value="cannot_do"') == 6
    assert "Tidak bisa sama sekali" in html
    assert 'name="worker.functioning.seeing"  required' not in html
    # Answers kept in the form when intake is down; only the answered ones are sent.
    form = {
        "csrf_token": "csrf-1",
        "idempotency_key": "key-2",
        "claim_count": "1",
        "action": "submit",
        "worker.functioning.walking": "a_lot",
        "worker.functioning.seeing": "",
    }
    page = await console.post("/cases/new", data=form)
    assert page.status_code == 503
    assert '<option value="a_lot" selected>' in page.text
    body = nest(list(form.items()))
    assert body["worker"] == {"functioning": {"walking": "a_lot"}}


async def test_a_page_that_needs_intake_says_it_is_not_answering(
    console: httpx.AsyncClient,
) -> None:
    page = await console.get("/cases")
    assert page.status_code == 503
    assert "Sedang tidak tersedia" in page.text


async def test_a_form_without_the_session_token_changes_nothing(
    console: httpx.AsyncClient,
) -> None:
    page = await console.post("/cases/new", data={"csrf_token": "forged", "action": "submit"})
    assert page.status_code == 403
    assert "Formulir kedaluwarsa" in page.text

"""The org-admin's people page changes: disable, enable and reset the second factor, and
a person of another organisation looks like nobody (unit tier, pages in-process)."""

from __future__ import annotations

from typing import cast

import httpx
import pytest
from lintas_console.adapters.services_api import ServiceClient
from lintas_console.domain.people import Person, Role
from lintas_console.entrypoints import pages_people
from lintas_console.entrypoints.web import Console

from services.console.tests.fakes import InMemoryPeople, pages_app

pytestmark = pytest.mark.unit
ADMIN = Person("person-oa", "org-ngo", "oa@ngo.test", Role.ORG_ADMIN, "Oa")
COLLEAGUE = Person("person-cw", "org-ngo", "cw@ngo.test", Role.CASEWORKER, "Cw", totp_secret="S")
STRANGER = Person("person-x", "org-other", "x@other.test", Role.CASEWORKER, "X")


async def test_changes_to_a_colleague_are_made_and_a_stranger_is_not_found() -> None:
    unused = cast(ServiceClient, None)
    app = pages_app([pages_people.router], ADMIN, unused, unused)
    ctx: Console = app.state.console
    people = cast(InMemoryPeople, ctx.accounts.people)
    for person in (COLLEAGUE, STRANGER):
        await people.add(person)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as web:
        form = {"csrf_token": "csrf-1"}
        answer = await web.post("/people/person-cw/disable", data=form)
        assert answer.status_code == 303
        assert "done=disabled" in answer.headers["location"]
        assert people.people["person-cw"].disabled
        assert (await web.post("/people/person-cw/enable", data=form)).status_code == 303
        assert not people.people["person-cw"].disabled
        assert (await web.post("/people/person-cw/reset-2fa", data=form)).status_code == 303
        assert people.people["person-cw"].totp_secret is None
        refused = await web.post("/people/person-x/disable", data=form)
        assert refused.status_code == 404
        assert not people.people["person-x"].disabled

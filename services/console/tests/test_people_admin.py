"""People of an organisation: who may invite, disable and reset whom; one-time links;
and the org-admin's pages (unit tier: in-memory stores, a fixed clock, no I/O)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from argon2 import PasswordHasher
from lintas_console.adapters.passwords import Passwords
from lintas_console.domain.people import PeopleError, Person, Role
from lintas_console.domain.sessions import Session
from lintas_console.handlers import Invitation, NotAllowedError, PeopleAdmin

from services.console.tests.fakes import InMemoryPeople, InMemorySessions
from services.console.tests.test_pages_programme import FakeIntake, console_app

pytestmark = pytest.mark.unit
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
#: Cheap hashing: these tests check rules, not argon2.
PASSWORDS = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _person(person_id: str, organisation: str, role: Role, **fields: object) -> Person:
    return Person(
        id=person_id,
        organisation_id=organisation,
        email=f"{person_id}@{organisation}.test",
        role=role,
        display_name=person_id.title(),
        **fields,  # type: ignore[arg-type]
    )


ORG_ADMIN_A = _person("anna", "ngo-a", Role.ORG_ADMIN)
CASEWORKER_A = _person("cita", "ngo-a", Role.CASEWORKER, totp_secret="SECRET")
ADMIN_A = _person("adi", "ngo-a", Role.ADMIN)
CASEWORKER_B = _person("beni", "ngo-b", Role.CASEWORKER)
ADMIN = _person("root", "lintas", Role.ADMIN)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def people() -> InMemoryPeople:
    store = InMemoryPeople()
    for person in (ORG_ADMIN_A, CASEWORKER_A, ADMIN_A, CASEWORKER_B, ADMIN):
        store.people[person.id] = person
    return store


@pytest.fixture
def sessions() -> InMemorySessions:
    store = InMemorySessions()
    for n, person_id in enumerate(("cita", "cita", "beni")):
        store.sessions[f"s{n}"] = Session(f"s{n}", person_id, "csrf", T0, T0, True, "id")
    return store


@pytest.fixture
def admin(people: InMemoryPeople, sessions: InMemorySessions, clock: Clock) -> PeopleAdmin:
    return PeopleAdmin(
        people,
        sessions,
        PASSWORDS,
        public_url="http://console.test/",
        link_lifetime=timedelta(hours=72),
        clock=clock,
    )


def _token(invitation: Invitation | str) -> str:
    link = invitation.link if isinstance(invitation, Invitation) else invitation
    assert link.startswith("http://console.test/welcome/")
    return link.rsplit("/", 1)[1]


# --- the rules --------------------------------------------------------------------------


async def test_an_org_admin_invites_into_their_own_organisation(admin: PeopleAdmin) -> None:
    invitation = await admin.invite(
        ORG_ADMIN_A, "ngo-a", Role.PROGRAMME, " Dewi@NGO-A.test ", "Dewi", "en"
    )
    person = invitation.person
    assert (person.organisation_id, person.role, person.email) == (
        "ngo-a",
        Role.PROGRAMME,
        "dewi@ngo-a.test",
    )
    assert person.language == "en"
    assert not person.has_password


async def test_an_org_admin_cannot_create_an_admin_or_invite_elsewhere(
    admin: PeopleAdmin,
) -> None:
    with pytest.raises(NotAllowedError):
        await admin.invite(ORG_ADMIN_A, "ngo-a", Role.ADMIN, "x@ngo-a.test", "X")
    with pytest.raises(NotAllowedError):
        await admin.invite(ORG_ADMIN_A, "ngo-b", Role.CASEWORKER, "x@ngo-b.test", "X")


@pytest.mark.parametrize("action", ["disable", "enable", "reset_second_factor", "new_link"])
async def test_an_org_admin_cannot_touch_another_organisations_person_nor_an_admin(
    admin: PeopleAdmin, people: InMemoryPeople, action: str
) -> None:
    for target in (CASEWORKER_B, ADMIN_A, ADMIN):
        with pytest.raises(NotAllowedError):
            await getattr(admin, action)(ORG_ADMIN_A, target.id)
    assert people.people[CASEWORKER_B.id] == CASEWORKER_B  # nothing changed
    assert people.links == {}


async def test_other_roles_manage_nobody(admin: PeopleAdmin) -> None:
    with pytest.raises(NotAllowedError):
        await admin.invite(CASEWORKER_A, "ngo-a", Role.CASEWORKER, "x@ngo-a.test", "X")
    with pytest.raises(NotAllowedError):
        await admin.disable(CASEWORKER_A, ORG_ADMIN_A.id)


async def test_an_unknown_person_is_not_allowed_either(admin: PeopleAdmin) -> None:
    with pytest.raises(NotAllowedError):
        await admin.disable(ORG_ADMIN_A, "person-nobody")


async def test_an_admin_and_the_command_line_manage_anyone(admin: PeopleAdmin) -> None:
    assert (await admin.disable(ADMIN, CASEWORKER_B.id)).disabled
    assert not (await admin.enable(None, CASEWORKER_B.id)).disabled
    made = await admin.invite(ADMIN, "ngo-b", Role.ADMIN, "boss@ngo-b.test", "Boss")
    assert made.person.role is Role.ADMIN


async def test_disabling_ends_the_persons_sessions_only(
    admin: PeopleAdmin, sessions: InMemorySessions, people: InMemoryPeople
) -> None:
    await admin.disable(ORG_ADMIN_A, CASEWORKER_A.id)
    assert people.people[CASEWORKER_A.id].disabled
    assert [s.person_id for s in sessions.sessions.values()] == ["beni"]
    assert not (await admin.enable(ORG_ADMIN_A, CASEWORKER_A.id)).disabled


async def test_resetting_the_second_factor_forgets_it_and_ends_the_sessions(
    admin: PeopleAdmin, sessions: InMemorySessions, people: InMemoryPeople
) -> None:
    await admin.reset_second_factor(ORG_ADMIN_A, CASEWORKER_A.id)
    assert not people.people[CASEWORKER_A.id].has_second_factor
    assert all(s.person_id != CASEWORKER_A.id for s in sessions.sessions.values())


async def test_a_taken_or_bad_email_is_refused(admin: PeopleAdmin) -> None:
    with pytest.raises(PeopleError, match="already in use"):
        await admin.invite(ORG_ADMIN_A, "ngo-a", Role.CASEWORKER, CASEWORKER_A.email, "Again")
    with pytest.raises(PeopleError, match="not an email"):
        await admin.invite(ORG_ADMIN_A, "ngo-a", Role.CASEWORKER, "not-an-email", "X")


async def test_a_one_time_link_works_once(admin: PeopleAdmin) -> None:
    invitation = await admin.invite(ORG_ADMIN_A, "ngo-a", Role.CASEWORKER, "d@ngo-a.test", "D")
    person = await admin.set_password(_token(invitation), PASSWORD)
    assert person.has_password
    assert PASSWORDS.check(person.password_hash, PASSWORD)
    with pytest.raises(PeopleError):
        await admin.set_password(_token(invitation), "another long password")


async def test_a_one_time_link_expires(admin: PeopleAdmin, clock: Clock) -> None:
    invitation = await admin.invite(ORG_ADMIN_A, "ngo-a", Role.CASEWORKER, "d@ngo-a.test", "D")
    clock.now = T0 + timedelta(hours=72, seconds=1)
    with pytest.raises(PeopleError):
        await admin.set_password(_token(invitation), PASSWORD)


async def test_a_new_link_replaces_the_old_one(admin: PeopleAdmin, clock: Clock) -> None:
    invitation = await admin.invite(ORG_ADMIN_A, "ngo-a", Role.CASEWORKER, "d@ngo-a.test", "D")
    clock.now = T0 + timedelta(hours=71)
    fresh = await admin.new_link(ORG_ADMIN_A, invitation.person.id)
    with pytest.raises(PeopleError):
        await admin.set_password(_token(invitation), PASSWORD)
    clock.now = T0 + timedelta(hours=100)  # the new link counts from when it was made
    assert (await admin.set_password(_token(fresh), PASSWORD)).has_password


async def test_a_short_password_is_refused_and_leaves_the_link_usable(admin: PeopleAdmin) -> None:
    invitation = await admin.invite(ORG_ADMIN_A, "ngo-a", Role.CASEWORKER, "d@ngo-a.test", "D")
    with pytest.raises(PeopleError, match="too short"):
        await admin.set_password(_token(invitation), "short")
    assert (await admin.set_password(_token(invitation), PASSWORD)).has_password


# --- the pages --------------------------------------------------------------------------


async def _client(person: Person, *others: Person) -> AsyncIterator[httpx.AsyncClient]:
    app = console_app(FakeIntake(), person)
    store = app.state.console.accounts.people
    for other in others:
        store.people[other.id] = other
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as client:
        yield client


@pytest.fixture
async def org_admin_browser() -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(ORG_ADMIN_A, CASEWORKER_A, CASEWORKER_B):
        yield client


async def test_the_people_page_lists_the_organisation_only(
    org_admin_browser: httpx.AsyncClient,
) -> None:
    page = await org_admin_browser.get("/people")
    assert page.status_code == 200
    assert CASEWORKER_A.email in page.text
    assert CASEWORKER_B.email not in page.text
    # An org-admin is not offered the admin role, nor asked for an organisation.
    assert 'value="admin"' not in page.text
    assert 'name="organisation"' not in page.text
    # Their own row has no disable button.
    assert f"/people/{ORG_ADMIN_A.id}/disable" not in page.text
    assert f"/people/{CASEWORKER_A.id}/disable" in page.text
    assert f"/people/{CASEWORKER_A.id}/reset-2fa" in page.text


async def test_an_invitation_shows_its_link_once(org_admin_browser: httpx.AsyncClient) -> None:
    answer = await org_admin_browser.post(
        "/people",
        data={
            "csrf_token": "csrf-1",
            "email": "dewi@ngo-a.test",
            "display_name": "Dewi",
            "role": "lawyer",
            "language": "id",
        },
    )
    assert answer.status_code == 200
    assert re.search(r'data-testid="one-time-link">http://console\.test/welcome/\S+<', answer.text)
    listing = await org_admin_browser.get("/people")
    assert "dewi@ngo-a.test" in listing.text
    assert "/welcome/" not in listing.text


async def test_a_taken_email_is_named_beside_the_field_and_the_form_kept(
    org_admin_browser: httpx.AsyncClient,
) -> None:
    answer = await org_admin_browser.post(
        "/people",
        data={
            "csrf_token": "csrf-1",
            "email": CASEWORKER_A.email,
            "display_name": "Someone New",
            "role": "caseworker",
            "language": "en",
        },
    )
    assert answer.status_code == 422
    assert 'id="f-email-error"' in answer.text
    assert "already used" in answer.text
    assert 'value="Someone New"' in answer.text


async def test_an_org_admin_cannot_post_an_admin_role(org_admin_browser: httpx.AsyncClient) -> None:
    answer = await org_admin_browser.post(
        "/people",
        data={
            "csrf_token": "csrf-1",
            "email": "boss@ngo-a.test",
            "display_name": "Boss",
            "role": "admin",
            "language": "en",
        },
    )
    assert answer.status_code == 422
    assert 'id="f-role-error"' in answer.text


async def test_actions_on_another_organisations_person_look_like_nothing_there(
    org_admin_browser: httpx.AsyncClient,
) -> None:
    for action in ("disable", "enable", "reset-2fa", "link"):
        answer = await org_admin_browser.post(
            f"/people/{CASEWORKER_B.id}/{action}", data={"csrf_token": "csrf-1"}
        )
        assert answer.status_code == 404, action


async def test_disable_and_a_new_link_from_the_page(org_admin_browser: httpx.AsyncClient) -> None:
    answer = await org_admin_browser.post(
        f"/people/{CASEWORKER_A.id}/disable", data={"csrf_token": "csrf-1"}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/people?done=disabled"
    page = await org_admin_browser.get(answer.headers["location"])
    assert "can no longer sign in" in page.text
    assert f"/people/{CASEWORKER_A.id}/enable" in page.text
    link = await org_admin_browser.post(
        f"/people/{CASEWORKER_A.id}/link", data={"csrf_token": "csrf-1"}
    )
    assert link.status_code == 200
    assert "/welcome/" in link.text


async def test_nobody_disables_themselves(org_admin_browser: httpx.AsyncClient) -> None:
    answer = await org_admin_browser.post(
        f"/people/{ORG_ADMIN_A.id}/disable", data={"csrf_token": "csrf-1"}
    )
    assert answer.status_code == 409


async def test_a_form_without_its_token_is_refused(org_admin_browser: httpx.AsyncClient) -> None:
    answer = await org_admin_browser.post(
        f"/people/{CASEWORKER_A.id}/disable", data={"csrf_token": "forged"}
    )
    assert answer.status_code == 403


async def test_an_admin_chooses_the_organisation_and_may_make_admins() -> None:
    async for client in _client(ADMIN, CASEWORKER_A, CASEWORKER_B):
        page = await client.get("/people", params={"organisation": "ngo-b"})
        assert CASEWORKER_B.email in page.text
        assert CASEWORKER_A.email not in page.text
        assert 'value="admin"' in page.text
        answer = await client.post(
            f"/people/{CASEWORKER_B.id}/disable", data={"csrf_token": "csrf-1"}
        )
        assert answer.headers["location"] == "/people?done=disabled&organisation=ngo-b"


async def test_people_pages_are_for_admins_only() -> None:
    async for client in _client(CASEWORKER_A):
        assert (await client.get("/people")).status_code == 404
        answer = await client.post(
            "/people", data={"csrf_token": "csrf-1", "email": "x@ngo-a.test"}
        )
        assert answer.status_code == 404

"""`lintas user …` and the console's demo people, on the real store.

The commands are run through the `lintas` entry point against a fresh console database
and a fresh intake database holding the demo organisations; their effect is read back
through the console's own store and use cases.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
from lintas_console.adapters.mongo_people import MongoPeopleStore, MongoSessionStore
from lintas_console.adapters.passwords import Passwords
from lintas_console.domain.people import PeopleError, Person
from lintas_console.domain.sessions import Session
from lintas_console.handlers import PeopleAdmin, utc_now
from lintas_shared.mongo import Document
from lintas_shared.person_tokens import Role
from lintas_tools.cli import main
from lintas_tools.demo import (
    DEMO_PEOPLE,
    DemoTarget,
    load_or_create_keys,
    load_or_create_people,
    seed_demo,
    seed_demo_people,
)
from pymongo import AsyncMongoClient

from tests.support.servers import Servers

pytestmark = pytest.mark.integration
PEPPER = "test-api-key-pepper"
PUBLIC_URL = "https://console.example.test"


@dataclass(frozen=True)
class Console:
    """The console's store as the commands see it, and its use cases over it."""

    people: MongoPeopleStore
    sessions: MongoSessionStore
    admin: PeopleAdmin
    database: str


@pytest.fixture
async def console(
    servers: Servers,
    mongo: AsyncMongoClient[Document],
    database_name: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[Console]:
    """A fresh console database, and an intake database with the demo organisations."""
    intake_database = f"{database_name}_intake"
    env = {
        "LINTAS_MONGODB_URI": servers.mongodb_uri,
        "LINTAS_CONSOLE_DATABASE": database_name,
        "LINTAS_INTAKE_DATABASE": intake_database,
        "LINTAS_API_KEY_PEPPER": PEPPER,
        "LINTAS_CONSOLE_PUBLIC_URL": PUBLIC_URL,
        "LINTAS_STATE_DIR": str(tmp_path),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    keys = load_or_create_keys(tmp_path / "demo-keys.json")
    await seed_demo(
        DemoTarget(servers.mongodb_uri, intake_database, f"{database_name}_referral", PEPPER),
        keys,
    )
    people = MongoPeopleStore(mongo[database_name]["people"])
    sessions = MongoSessionStore(mongo[database_name]["sessions"])
    admin = PeopleAdmin(
        people, sessions, Passwords(), public_url=PUBLIC_URL, link_lifetime=timedelta(hours=1)
    )
    try:
        yield Console(people, sessions, admin, database_name)
    finally:
        for name in (intake_database, f"{database_name}_referral"):
            await mongo.drop_database(name)


async def lintas(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `lintas ARGV` (in a thread: it runs its own event loop); exit code, out, err."""
    capsys.readouterr()
    code = await asyncio.to_thread(partial(main, list(argv)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def create(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    code, out, err = await lintas(capsys, "user", "create", *argv)
    assert code == 0, err
    answer = json.loads(out)
    assert isinstance(answer, dict)
    return answer


def token_of(link: object) -> str:
    assert isinstance(link, str)
    assert link.startswith(f"{PUBLIC_URL}/welcome/")
    return link.removeprefix(f"{PUBLIC_URL}/welcome/")


async def stored(console: Console, email: str) -> Person:
    person = await console.people.by_email(email)
    assert person is not None
    return person


async def test_create_prints_a_one_time_link_that_sets_the_password(
    console: Console, capsys: pytest.CaptureFixture[str], mongo: AsyncMongoClient[Document]
) -> None:
    answer = await create(
        capsys,
        "--org",
        "org-demo-ngo-id",
        "--role",
        "caseworker",
        "--email",
        " Ani@Example.ORG ",
        "--name",
        "Ani",
        "--language",
        "en",
    )
    person = await stored(console, "ani@example.org")
    assert answer["id"] == person.id
    assert answer["email"] == "ani@example.org"
    assert answer["organisation_id"] == "org-demo-ngo-id"
    assert answer["role"] == "caseworker"
    assert answer["has_password"] is False
    assert answer["link_valid_hours"] == 72
    assert (person.role, person.display_name, person.language) == (Role.CASEWORKER, "Ani", "en")
    assert not person.has_password
    token = token_of(answer["link"])
    # Only its hash is stored: the link is shown once, by the command.
    document = await mongo[console.database]["people"].find_one({"_id": person.id})
    assert token not in json.dumps(document, default=str)

    await console.admin.set_password(token, "a long enough password")
    person = await stored(console, "ani@example.org")
    assert Passwords().check(person.password_hash, "a long enough password")
    with pytest.raises(PeopleError):  # a link works once
        await console.admin.set_password(token, "another long password")


async def test_create_refuses_a_taken_email_an_unknown_organisation_and_a_wrong_kind(
    console: Console, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ("--role", "lawyer", "--email", "lawyer@example.org")
    await create(capsys, "--org", "org-demo-legal-hk", *base)

    code, out, err = await lintas(capsys, "user", "create", "--org", "org-demo-legal-sg", *base)
    assert (code, out) == (1, "")
    assert "email already in use" in err

    code, _, err = await lintas(
        capsys, "user", "create", "--org", "org-nope", "--role", "caseworker", "--email", "x@y.id"
    )
    assert code == 1
    assert "no organisation 'org-nope'" in err

    for org, role in (
        ("org-demo-ngo-id", "lawyer"),
        ("org-demo-ngo-id", "admin"),
        ("org-demo-legal-hk", "caseworker"),
    ):
        code, _, err = await lintas(
            capsys, "user", "create", "--org", org, "--role", role, "--email", "z@y.id"
        )
        assert code == 1, (org, role)
        assert f"the role {role} is for an organisation of kind" in err
    assert await console.people.by_email("z@y.id") is None
    assert await console.people.by_email("x@y.id") is None

    code, _, err = await lintas(
        capsys, "user", "create", "--org", "org-demo-ngo-id", "--role", "programme", "--email", "@"
    )
    assert code == 1
    assert "not an email address" in err


async def test_link_replaces_the_earlier_link(
    console: Console, capsys: pytest.CaptureFixture[str]
) -> None:
    first = await create(
        capsys, "--org", "org-demo-admin", "--role", "admin", "--email", "ops@example.org"
    )
    code, out, err = await lintas(capsys, "user", "link", "--email", "OPS@example.org")
    assert code == 0, err
    second = json.loads(out)
    assert second["id"] == first["id"]
    assert second["link"] != first["link"]
    with pytest.raises(PeopleError):
        await console.admin.set_password(token_of(first["link"]), "a long enough password")
    await console.admin.set_password(token_of(second["link"]), "a long enough password")
    assert (await stored(console, "ops@example.org")).has_password


async def _session_of(console: Console, person: Person) -> Session:
    now = utc_now()
    session = Session(
        key=f"session-of-{person.id}",
        person_id=person.id,
        csrf_token="csrf",
        created_at=now,
        last_seen_at=now,
        second_factor_done=True,
        language="id",
    )
    await console.sessions.add(session)
    return session


async def test_disable_stops_sign_in_and_ends_sessions(
    console: Console, capsys: pytest.CaptureFixture[str]
) -> None:
    await create(capsys, "--org", "org-demo-ngo-id", "--role", "programme", "--email", "p@e.org")
    person = await stored(console, "p@e.org")
    session = await _session_of(console, person)

    code, out, err = await lintas(capsys, "user", "disable", "--email", "p@e.org")
    assert code == 0, err
    assert json.loads(out)["disabled"] is True
    assert (await stored(console, "p@e.org")).disabled
    assert await console.sessions.get(session.key) is None


async def test_reset_2fa_forgets_the_authenticator_and_ends_sessions(
    console: Console, capsys: pytest.CaptureFixture[str]
) -> None:
    await create(capsys, "--org", "org-demo-legal-sg", "--role", "lawyer", "--email", "l@e.org")
    person = await stored(console, "l@e.org")
    enrolled = Person(**{**vars(person), "totp_secret": "JBSWY3DPEHPK3PXP"})
    await console.people.save(enrolled)
    session = await _session_of(console, enrolled)

    code, out, err = await lintas(capsys, "user", "reset-2fa", "--email", "l@e.org")
    assert code == 0, err
    assert json.loads(out)["has_second_factor"] is False
    assert (await stored(console, "l@e.org")).totp_secret is None
    assert await console.sessions.get(session.key) is None


async def test_commands_on_an_unknown_person_fail(
    console: Console, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("disable", "reset-2fa", "link"):
        code, out, err = await lintas(capsys, "user", command, "--email", "nobody@example.org")
        assert (code, out) == (1, ""), command
        assert "no such person" in err


async def test_links_follow_the_console_port_without_a_public_url(
    console: Console, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LINTAS_CONSOLE_PUBLIC_URL")
    monkeypatch.setenv("LINTAS_CONSOLE_PORT", "18999")
    answer = await create(
        capsys, "--org", "org-demo-ngo-id", "--role", "org_admin", "--email", "oa@e.org"
    )
    assert str(answer["link"]).startswith("http://127.0.0.1:18999/welcome/")


async def test_demo_people_are_seeded_once_with_their_passwords(
    console: Console, servers: Servers, tmp_path: Path
) -> None:
    keys_path = tmp_path / "demo-keys.json"
    people = load_or_create_people(keys_path)
    await seed_demo_people(servers.mongodb_uri, console.database, people)
    first = {p.name: await stored(console, p.email) for p in DEMO_PEOPLE}
    # Again, as the next `make up` does: the same people, the same passwords.
    again = load_or_create_people(keys_path)
    assert again == people
    await seed_demo_people(servers.mongodb_uri, console.database, again)
    passwords = Passwords()
    for demo in DEMO_PEOPLE:
        person = await stored(console, demo.email)
        assert person.id == first[demo.name].id
        assert (person.organisation_id, person.role) == (demo.organisation_id, demo.role)
        assert person.display_name == demo.display_name
        assert not person.disabled
        assert passwords.check(person.password_hash, people[demo.name]["password"])
    assert len(await console.people.of_organisation("org-demo-ngo-id")) == 3

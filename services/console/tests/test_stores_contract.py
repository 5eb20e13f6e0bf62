"""One contract for the console's stores, run against the in-memory fakes (what the
unit tests use) and the MongoDB adapters on the real store: what the fakes promise, the
store keeps."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from lintas_console.adapters.mongo_people import MongoPeopleStore, MongoSessionStore
from lintas_console.domain.people import PeopleError, Person, Role
from lintas_console.domain.sessions import Session
from lintas_console.ports import PeopleStore, SessionStore
from lintas_shared.mongo import make_mongo_client

from services.console.tests.fakes import InMemoryPeople, InMemorySessions
from tests.support.servers import Servers

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.unit),
        pytest.param("mongo", marks=pytest.mark.integration),
    ]
)
def store_uri(request: pytest.FixtureRequest) -> str | None:
    """None for the in-memory fakes; the real store's address otherwise (asked for here,
    outside any event loop, because the servers fixture starts them synchronously)."""
    if request.param == "memory":
        return None
    servers: Servers = request.getfixturevalue("servers")
    return servers.mongodb_uri


@pytest.fixture
async def stores(store_uri: str | None) -> AsyncIterator[tuple[PeopleStore, SessionStore]]:
    if store_uri is None:
        yield InMemoryPeople(), InMemorySessions()
        return
    client = make_mongo_client(store_uri, app_name="console-contract-tests")
    name = f"test_console_{uuid.uuid4().hex[:12]}"
    people = MongoPeopleStore(client[name]["people"])
    sessions = MongoSessionStore(client[name]["sessions"])
    await people.ensure_indexes()
    await sessions.ensure_indexes()
    try:
        yield people, sessions
    finally:
        await client.drop_database(name)
        await client.close()


def _person(n: int, organisation: str = "org-ngo", **changes: object) -> Person:
    person = Person(
        id=f"person-{n}",
        organisation_id=organisation,
        email=f"p{n}@example.org",
        role=Role.CASEWORKER,
        display_name=f"Person {n}",
        created_at=T0,
    )
    return replace(person, **changes)  # type: ignore[arg-type]


async def test_people_are_found_by_id_email_and_organisation(
    stores: tuple[PeopleStore, SessionStore],
) -> None:
    people, _ = stores
    await people.add(_person(1, display_name="Wati"))
    await people.add(_person(2, display_name="Ani"))
    await people.add(_person(3, organisation="org-other"))
    found = await people.get("person-1")
    assert found == _person(1, display_name="Wati")
    assert await people.by_email("p2@example.org") == _person(2, display_name="Ani")
    assert [p.id for p in await people.of_organisation("org-ngo")] == ["person-2", "person-1"]
    assert await people.names(["person-1", "person-9"]) == {"person-1": "Wati"}
    assert await people.get("person-9") is None


async def test_an_email_belongs_to_one_person(stores: tuple[PeopleStore, SessionStore]) -> None:
    people, _ = stores
    await people.add(_person(1))
    with pytest.raises(PeopleError):
        await people.add(_person(2, email="p1@example.org"))


async def test_a_saved_person_keeps_every_field(stores: tuple[PeopleStore, SessionStore]) -> None:
    people, _ = stores
    await people.add(_person(1))
    changed = _person(
        1, role=Role.LAWYER, password_hash="h", totp_secret="S", disabled=True, language="en"
    )
    await people.save(changed)
    assert await people.get("person-1") == changed


async def test_a_one_time_link_works_once_and_not_after_it_expires(
    stores: tuple[PeopleStore, SessionStore],
) -> None:
    people, _ = stores
    await people.add(_person(1))
    await people.set_link("person-1", "hash-1", T0 + timedelta(hours=1))
    assert await people.use_link("hash-1", T0 + timedelta(hours=2)) is None
    await people.set_link("person-1", "hash-2", T0 + timedelta(hours=1))
    assert await people.use_link("hash-1", T0) is None  # replaced by the newer link
    used = await people.use_link("hash-2", T0)
    assert used is not None
    assert used.id == "person-1"
    assert await people.use_link("hash-2", T0) is None


async def test_sessions_are_kept_changed_and_ended(
    stores: tuple[PeopleStore, SessionStore],
) -> None:
    _, sessions = stores
    first = Session("k1", "person-1", "csrf", T0, T0, second_factor_done=False, language="id")
    await sessions.add(first)
    await sessions.add(replace(first, key="k2"))
    await sessions.add(replace(first, key="k3", person_id="person-2"))
    assert await sessions.get("k1") == first
    done = replace(first, second_factor_done=True, pending_totp_secret="S", language="en")
    await sessions.save(done)
    assert await sessions.get("k1") == done
    await sessions.remove("k3")
    assert await sessions.get("k3") is None
    await sessions.remove_person("person-1")
    assert await sessions.get("k1") is None
    assert await sessions.get("k2") is None

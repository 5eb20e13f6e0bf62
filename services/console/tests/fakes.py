"""In-memory stand-ins of the console's ports, for unit tests (the contract tests run the
same checks against these and the real store), and pages served in-process with them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from fastapi import APIRouter, FastAPI
from lintas_console.adapters.passwords import Passwords
from lintas_console.adapters.services_api import ServiceClient
from lintas_console.bootstrap import ERROR_PAGES, _error_page
from lintas_console.domain.attempts import AttemptLimiter
from lintas_console.domain.people import PeopleError, Person
from lintas_console.domain.sessions import Session, SessionPolicy
from lintas_console.entrypoints import web
from lintas_console.entrypoints.web import Console, Visitor, build_templates
from lintas_console.handlers import Accounts, PeopleAdmin
from lintas_console.i18n import Translator, load_catalogs
from lintas_console.settings import ConsoleSettings


class InMemoryPeople:
    """PeopleStore in a dict."""

    def __init__(self) -> None:
        self.people: dict[str, Person] = {}
        self.links: dict[str, tuple[str, datetime]] = {}

    async def add(self, person: Person) -> None:
        if any(p.email == person.email for p in self.people.values()):
            raise PeopleError("email already in use")
        self.people[person.id] = person

    async def get(self, person_id: str) -> Person | None:
        return self.people.get(person_id)

    async def by_email(self, email: str) -> Person | None:
        return next((p for p in self.people.values() if p.email == email), None)

    async def of_organisation(self, organisation_id: str) -> list[Person]:
        found = [p for p in self.people.values() if p.organisation_id == organisation_id]
        return sorted(found, key=lambda p: p.display_name)

    async def names(self, person_ids: list[str]) -> dict[str, str]:
        return {i: self.people[i].display_name for i in person_ids if i in self.people}

    async def save(self, person: Person) -> None:
        self.people[person.id] = replace(person)

    async def set_link(self, person_id: str, token_hash: str, expires_at: datetime) -> None:
        self.links = {h: v for h, v in self.links.items() if v[0] != person_id}
        self.links[token_hash] = (person_id, expires_at)

    async def use_link(self, token_hash: str, now: datetime) -> Person | None:
        found = self.links.pop(token_hash, None)
        if found is None or found[1] <= now:
            return None
        return self.people.get(found[0])


class InMemorySessions:
    """SessionStore in a dict."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}

    async def add(self, session: Session) -> None:
        self.sessions[session.key] = session

    async def get(self, key: str) -> Session | None:
        return self.sessions.get(key)

    async def save(self, session: Session) -> None:
        self.sessions[session.key] = session

    async def remove(self, key: str) -> None:
        self.sessions.pop(key, None)

    async def remove_person(self, person_id: str) -> None:
        self.sessions = {k: s for k, s in self.sessions.items() if s.person_id != person_id}


def pages_app(
    routers: list[APIRouter],
    person: Person,
    intake: ServiceClient,
    referral: ServiceClient,
    language: str = "en",
) -> FastAPI:
    """Some of the console's pages, in-process, with in-memory stores, the given clients
    of intake and referral, and `person` signed in (session CSRF token "csrf-1")."""
    translator = Translator(load_catalogs())
    people, sessions = InMemoryPeople(), InMemorySessions()
    people.people[person.id] = person
    passwords = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    ctx = Console(
        settings=ConsoleSettings(),
        accounts=Accounts(
            people,
            sessions,
            passwords,
            policy=SessionPolicy(),
            attempts=AttemptLimiter(5, timedelta(minutes=15)),
            enforce_second_factor=False,
        ),
        people=PeopleAdmin(
            people,
            sessions,
            passwords,
            public_url="http://console.test",
            link_lifetime=timedelta(hours=72),
        ),
        intake=intake,
        referral=referral,
        translator=translator,
        templates=build_templates(translator),
    )
    app = FastAPI()
    app.state.console = ctx
    for exc_class, status, heading, message in ERROR_PAGES:
        app.add_exception_handler(exc_class, _error_page(status, heading, message))
    for router in routers:
        app.include_router(router)
    now = datetime.now(UTC)
    session = Session("key", person.id, "csrf-1", now, now, True, language)

    async def signed_in() -> Visitor:
        translator.use(session.language)
        return Visitor(session, person, "cookie")

    app.dependency_overrides[web._visitor] = signed_in
    return app

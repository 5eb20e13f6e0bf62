"""The console's use cases: signing in, second factors, and people of an organisation.

Each depends only on the ports (stores) and pure rules; the web pages and the `lintas
user` command call them alike.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pyotp

from lintas_console.adapters.passwords import Passwords
from lintas_console.domain.attempts import AttemptLimiter
from lintas_console.domain.people import (
    PeopleError,
    Person,
    Role,
    check_new_password,
    normalise_email,
    requires_second_factor,
)
from lintas_console.domain.sessions import Session, SessionPolicy
from lintas_console.ports import PeopleStore, SessionStore

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


def token_hash(token: str) -> str:
    """How a session id or a one-time link is stored: never the value itself."""
    return hashlib.sha256(token.encode()).hexdigest()


class SignInRefusedError(Exception):
    """Wrong email or password, disabled account, or wrong code: one answer for all."""


class SignInThrottledError(Exception):
    """Too many failures for this account or address; try again later."""


class NotAllowedError(Exception):
    """The person may not do this (pages answer 404, as for anything not theirs)."""


@dataclass(frozen=True)
class SignedIn:
    """A new session; `cookie` is the only place its id exists outside the browser."""

    cookie: str
    session: Session
    person: Person


@dataclass(frozen=True)
class Invitation:
    """A person and the one-time link that sets their password."""

    person: Person
    link: str


class Accounts:
    """Sign-in, sessions and the second factor."""

    def __init__(
        self,
        people: PeopleStore,
        sessions: SessionStore,
        passwords: Passwords,
        *,
        policy: SessionPolicy,
        attempts: AttemptLimiter,
        enforce_second_factor: bool,
        clock: Clock = utc_now,
    ) -> None:
        self.people = people
        self.sessions = sessions
        self._passwords = passwords
        self._policy = policy
        self._attempts = attempts
        self._enforce = enforce_second_factor
        self._clock = clock

    def needs_second_factor(self, person: Person) -> bool:
        """Whether this person gives a TOTP code after the password."""
        return requires_second_factor(person, enforced=self._enforce)

    async def sign_in(
        self, email: str, password: str, address: str, language: str, old_cookie: str | None
    ) -> SignedIn:
        """Check the password and open a new session (the old one, if any, is dropped:
        the id changes at sign-in)."""
        now = self._clock()
        try:
            account = "account:" + normalise_email(email)
        except PeopleError:
            account = "account:?"
        by_address = "address:" + address
        if self._attempts.blocked(account, now) or self._attempts.blocked(by_address, now):
            raise SignInThrottledError
        person = await self.people.by_email(account.removeprefix("account:"))
        stored = person.password_hash if person is not None else None
        if not self._passwords.check(stored, password) or person is None or person.disabled:
            self._attempts.failed(account, now)
            self._attempts.failed(by_address, now)
            raise SignInRefusedError
        self._attempts.succeeded(account)
        if old_cookie:
            await self.sessions.remove(token_hash(old_cookie))
        cookie = secrets.token_urlsafe(32)
        session = Session(
            key=token_hash(cookie),
            person_id=person.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
            second_factor_done=not self.needs_second_factor(person),
            language=person.language or language,
        )
        await self.sessions.add(session)
        return SignedIn(cookie, session, person)

    async def resume(self, cookie: str) -> tuple[Session, Person] | None:
        """The live session of this cookie and its person, marked as seen now."""
        now = self._clock()
        session = await self.sessions.get(token_hash(cookie))
        if session is None:
            return None
        if not session.is_live(now, self._policy):
            await self.sessions.remove(session.key)
            return None
        person = await self.people.get(session.person_id)
        if person is None or person.disabled:
            await self.sessions.remove(session.key)
            return None
        # Written at most once a minute: a page of a few requests costs one write.
        if now - session.last_seen_at >= timedelta(minutes=1):
            session = session.seen(now)
            await self.sessions.save(session)
        return session, person

    async def sign_out(self, cookie: str) -> None:
        """End the session."""
        await self.sessions.remove(token_hash(cookie))

    async def set_language(self, session: Session, person: Person, language: str) -> None:
        """Switch the person's language (kept for their next sign-in too)."""
        await self.sessions.save(replace(session, language=language))
        await self.people.save(replace(person, language=language))

    async def start_enrolment(self, session: Session) -> str:
        """A new TOTP secret for the person to add to an authenticator app."""
        secret = pyotp.random_base32()
        await self.sessions.save(replace(session, pending_totp_secret=secret))
        return secret

    def provisioning_uri(self, person: Person, secret: str) -> str:
        """The otpauth:// address an authenticator app reads (as text or a QR code)."""
        return pyotp.TOTP(secret).provisioning_uri(name=person.email, issuer_name="Lintas")

    async def confirm_second_factor(self, session: Session, person: Person, code: str) -> Session:
        """Check a TOTP code: the enrolled secret's, or the pending one being enrolled."""
        now = self._clock()
        account = "account:" + person.email
        if self._attempts.blocked(account, now):
            raise SignInThrottledError
        secret = person.totp_secret or session.pending_totp_secret
        if secret is None or not pyotp.TOTP(secret).verify(
            code.strip(), for_time=now, valid_window=1
        ):
            self._attempts.failed(account, now)
            raise SignInRefusedError
        if person.totp_secret is None:
            await self.people.save(replace(person, totp_secret=secret))
        done = replace(session, second_factor_done=True, pending_totp_secret=None)
        await self.sessions.save(done)
        return done


class PeopleAdmin:
    """Invite, disable and reset people: org-admins for their organisation, admins and the
    `lintas user` command for any."""

    def __init__(
        self,
        people: PeopleStore,
        sessions: SessionStore,
        passwords: Passwords,
        *,
        public_url: str,
        link_lifetime: timedelta,
        clock: Clock = utc_now,
    ) -> None:
        self._people = people
        self._sessions = sessions
        self._passwords = passwords
        self._public_url = public_url.rstrip("/")
        self._link_lifetime = link_lifetime
        self._clock = clock

    def _check(self, actor: Person | None, organisation_id: str, role: Role | None) -> None:
        """`actor` None is the operator's command line."""
        if actor is None or actor.role is Role.ADMIN:
            return
        if actor.role is not Role.ORG_ADMIN or actor.organisation_id != organisation_id:
            raise NotAllowedError
        if role is Role.ADMIN:
            raise NotAllowedError

    async def _link(self, person: Person) -> str:
        token = secrets.token_urlsafe(32)
        await self._people.set_link(
            person.id, token_hash(token), self._clock() + self._link_lifetime
        )
        return f"{self._public_url}/welcome/{token}"

    async def invite(
        self,
        actor: Person | None,
        organisation_id: str,
        role: Role,
        email: str,
        display_name: str,
        language: str = "id",
    ) -> Invitation:
        """Create a person without a password; the link lets them set one."""
        self._check(actor, organisation_id, role)
        person = Person(
            id="person-" + secrets.token_hex(8),
            organisation_id=organisation_id,
            email=normalise_email(email),
            role=role,
            display_name=display_name.strip() or email,
            language=language,
            created_at=self._clock(),
        )
        await self._people.add(person)
        return Invitation(person, await self._link(person))

    async def _target(self, actor: Person | None, person_id: str) -> Person:
        person = await self._people.get(person_id)
        if person is None:
            raise NotAllowedError
        self._check(actor, person.organisation_id, person.role)
        return person

    async def find(self, email: str) -> Person:
        """A person by email (the command line names people so)."""
        person = await self._people.by_email(normalise_email(email))
        if person is None:
            raise PeopleError("no such person")
        return person

    async def disable(self, actor: Person | None, person_id: str) -> Person:
        """Stop a person signing in, and end their sessions now."""
        person = replace(await self._target(actor, person_id), disabled=True)
        await self._people.save(person)
        await self._sessions.remove_person(person.id)
        return person

    async def enable(self, actor: Person | None, person_id: str) -> Person:
        """Let a disabled person sign in again."""
        person = replace(await self._target(actor, person_id), disabled=False)
        await self._people.save(person)
        return person

    async def reset_second_factor(self, actor: Person | None, person_id: str) -> Person:
        """Forget the authenticator (a lost phone); they enrol a new one at next sign-in."""
        person = replace(await self._target(actor, person_id), totp_secret=None)
        await self._people.save(person)
        await self._sessions.remove_person(person.id)
        return person

    async def new_link(self, actor: Person | None, person_id: str) -> str:
        """A fresh one-time link to set a password (a forgotten one)."""
        return await self._link(await self._target(actor, person_id))

    async def set_password(self, token: str, password: str) -> Person:
        """Use a one-time link; `PeopleError` if it is unknown, used or expired."""
        check_new_password(password)
        person = await self._people.use_link(token_hash(token), self._clock())
        if person is None:
            raise PeopleError("link unknown or expired")
        person = replace(person, password_hash=self._passwords.hash(password))
        await self._people.save(person)
        await self._sessions.remove_person(person.id)
        return person

    async def ensure_demo_person(
        self, organisation_id: str, role: Role, email: str, password: str, display_name: str
    ) -> Person:
        """Create or refresh a demo person with a known password (`make up` only)."""
        existing = await self._people.by_email(normalise_email(email))
        person = existing or Person(
            id="person-" + secrets.token_hex(8),
            organisation_id=organisation_id,
            email=normalise_email(email),
            role=role,
            display_name=display_name,
            created_at=self._clock(),
        )
        person = replace(
            person,
            organisation_id=organisation_id,
            role=role,
            display_name=display_name,
            password_hash=self._passwords.hash(password),
            disabled=False,
        )
        if existing is None:
            await self._people.add(person)
        else:
            await self._people.save(person)
        return person

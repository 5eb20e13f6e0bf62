"""Signing in: one answer for every refusal, limits per account and address, sessions
that rotate and expire, and the second factor (unit tier: in-memory stores)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from lintas_console.adapters.passwords import Passwords
from lintas_console.domain.attempts import AttemptLimiter
from lintas_console.domain.people import Person, Role
from lintas_console.domain.sessions import SessionPolicy
from lintas_console.handlers import (
    Accounts,
    SignInRefusedError,
    SignInThrottledError,
    token_hash,
)

from services.console.tests.fakes import InMemoryPeople, InMemorySessions

pytestmark = pytest.mark.unit
PASSWORD = "correct horse battery"
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def people() -> InMemoryPeople:
    return InMemoryPeople()


@pytest.fixture
def sessions() -> InMemorySessions:
    return InMemorySessions()


PASSWORDS = Passwords()


def _accounts(
    people: InMemoryPeople, sessions: InMemorySessions, clock: Clock, *, enforce: bool = True
) -> Accounts:
    return Accounts(
        people,
        sessions,
        PASSWORDS,
        policy=SessionPolicy(idle=timedelta(minutes=30), absolute=timedelta(hours=12)),
        attempts=AttemptLimiter(3, timedelta(minutes=15)),
        enforce_second_factor=enforce,
        clock=clock,
    )


async def _person(people: InMemoryPeople, role: Role = Role.CASEWORKER, **kw: object) -> Person:
    person = Person(
        id=f"person-{role.value}",
        organisation_id="org-ngo",
        email=f"{role.value}@example.org",
        role=role,
        display_name="Sari",
        password_hash=PASSWORDS.hash(PASSWORD),
        **kw,  # type: ignore[arg-type]
    )
    await people.add(person)
    return person


async def test_a_right_password_opens_a_session_kept_only_as_a_hash(
    people: InMemoryPeople, sessions: InMemorySessions, clock: Clock
) -> None:
    await _person(people)
    signed = await _accounts(people, sessions, clock).sign_in(
        "Caseworker@Example.org ", PASSWORD, "10.0.0.1", "en", None
    )
    assert signed.session.second_factor_done
    assert list(sessions.sessions) == [token_hash(signed.cookie)]
    assert signed.cookie not in sessions.sessions


async def test_unknown_account_and_wrong_password_get_the_same_refusal(
    people: InMemoryPeople, sessions: InMemorySessions, clock: Clock
) -> None:
    await _person(people)
    accounts = _accounts(people, sessions, clock)
    for email, password in (("nobody@example.org", PASSWORD), ("caseworker@example.org", "x")):
        with pytest.raises(SignInRefusedError):
            await accounts.sign_in(email, password, "10.0.0.1", "id", None)
    assert sessions.sessions == {}


async def test_a_disabled_person_cannot_sign_in(
    people: InMemoryPeople, sessions: InMemorySessions, clock: Clock
) -> None:
    await _person(people, disabled=True)
    with pytest.raises(SignInRefusedError):
        await _accounts(people, sessions, clock).sign_in(
            "caseworker@example.org", PASSWORD, "10.0.0.1", "id", None
        )


async def test_failures_limit_the_account_even_from_new_addresses(
    people: InMemoryPeople, sessions: InMemorySessions, clock: Clock
) -> None:
    await _person(people)
    accounts = _accounts(people, sessions, clock)
    for n in range(3):
        with pytest.raises(SignInRefusedError):
            await accounts.sign_in("caseworker@example.org", "wrong", f"10.0.0.{n}", "id", None)
    with pytest.raises(SignInThrottledError):
        await accounts.sign_in("caseworker@example.org", PASSWORD, "10.0.0.99", "id", None)
    clock.now += timedelta(minutes=15)
    assert await accounts.sign_in("caseworker@example.org", PASSWORD, "10.0.0.99", "id", None)


async def test_failures_limit_the_address_across_accounts(
    people: InMemoryPeople, sessions: InMemorySessions, clock: Clock
) -> None:
    await _person(people)
    accounts = _accounts(people, sessions, clock)
    for n in range(3):
        with pytest.raises(SignInRefusedError):
            await accounts.sign_in(f"guess{n}@example.org", "x", "10.9.9.9", "id", None)
    with pytest.raises(SignInThrottledError):
        await accounts.sign_in("caseworker@example.org", PASSWORD, "10.9.9.9", "id", None)


async def test_sign_in_rotates_the_session_id(
    people: InMemoryPeople, sessions: InMemorySessions, clock: Clock
) -> None:
    await _person(people)
    accounts = _accounts(people, sessions, clock)
    first = await accounts.sign_in("caseworker@example.org", PASSWORD, "a", "id", None)
    second = await accounts.sign_in("caseworker@example.org", PASSWORD, "a", "id", first.cookie)
    assert first.cookie != second.cookie
    assert await accounts.resume(first.cookie) is None
    assert await accounts.resume(second.cookie) is not None


async def test_sessions_expire_when_idle_and_after_the_absolute_limit(
    people: InMemoryPeople, sessions: InMemorySessions, clock: Clock
) -> None:
    await _person(people)
    accounts = _accounts(people, sessions, clock)
    idle = await accounts.sign_in("caseworker@example.org", PASSWORD, "a", "id", None)
    clock.now += timedelta(minutes=31)
    assert await accounts.resume(idle.cookie) is None

    busy = await accounts.sign_in("caseworker@example.org", PASSWORD, "a", "id", None)
    for _ in range(12 * 3):  # a request every 20 minutes keeps it from idling...
        clock.now += timedelta(minutes=20)
        if clock.now - busy.session.created_at >= timedelta(hours=12):
            break
        assert await accounts.resume(busy.cookie) is not None
    assert await accounts.resume(busy.cookie) is None  # ...until 12 hours after sign-in


async def test_lawyers_must_enrol_and_use_a_second_factor(
    people: InMemoryPeople, sessions: InMemorySessions, clock: Clock
) -> None:
    lawyer = await _person(people, Role.LAWYER)
    accounts = _accounts(people, sessions, clock)
    signed = await accounts.sign_in(lawyer.email, PASSWORD, "a", "id", None)
    assert not signed.session.second_factor_done
    secret = await accounts.start_enrolment(signed.session)
    pending = await sessions.get(signed.session.key)
    assert pending is not None
    with pytest.raises(SignInRefusedError):
        await accounts.confirm_second_factor(pending, lawyer, "000000")
    code = pyotp.TOTP(secret).at(clock.now)
    done = await accounts.confirm_second_factor(pending, lawyer, code)
    assert done.second_factor_done
    enrolled = await people.get(lawyer.id)
    assert enrolled is not None
    assert enrolled.totp_secret == secret


async def test_the_dev_setting_lets_lawyers_sign_in_with_a_password_only(
    people: InMemoryPeople, sessions: InMemorySessions, clock: Clock
) -> None:
    lawyer = await _person(people, Role.LAWYER)
    accounts = _accounts(people, sessions, clock, enforce=False)
    signed = await accounts.sign_in(lawyer.email, PASSWORD, "a", "id", None)
    assert signed.session.second_factor_done

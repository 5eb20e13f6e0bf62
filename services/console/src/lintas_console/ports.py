"""What the console's use cases need from the outside world."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from lintas_console.domain.people import Person
from lintas_console.domain.sessions import Session


class PeopleStore(Protocol):
    """People, by id and by email; the one-time password links they are sent."""

    async def add(self, person: Person) -> None:
        """Store a new person; `PeopleError` if the email is taken."""

    async def get(self, person_id: str) -> Person | None:
        """One person."""

    async def by_email(self, email: str) -> Person | None:
        """The person with this (normalised) email."""

    async def of_organisation(self, organisation_id: str) -> list[Person]:
        """Everyone in one organisation, by name."""

    async def names(self, person_ids: list[str]) -> dict[str, str]:
        """Display names of these people (unknown ids are left out)."""

    async def save(self, person: Person) -> None:
        """Replace a person's fields."""

    async def set_link(self, person_id: str, token_hash: str, expires_at: datetime) -> None:
        """Remember a one-time password link (replacing any earlier one)."""

    async def use_link(self, token_hash: str, now: datetime) -> Person | None:
        """The person of a live link, which is used up by this call (or None)."""


class SessionStore(Protocol):
    """Server-side sessions, found by the hash of the cookie's id."""

    async def add(self, session: Session) -> None:
        """Store a new session."""

    async def get(self, key: str) -> Session | None:
        """One session."""

    async def save(self, session: Session) -> None:
        """Replace a session's fields."""

    async def remove(self, key: str) -> None:
        """Forget one session."""

    async def remove_person(self, person_id: str) -> None:
        """Forget every session of a person (disabled, or password changed)."""

"""Operator commands for the people who sign in to the console (`lintas user …`).

A new person gets no password: the command prints a one-time link with which they set
one. The same link is how an operator helps someone who forgot theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from lintas_console.adapters.mongo_people import MongoPeopleStore, MongoSessionStore
from lintas_console.adapters.passwords import Passwords
from lintas_console.domain.people import PeopleError, Person
from lintas_console.handlers import PeopleAdmin
from lintas_intake.adapters.organisation_directory import MongoOrganisationDirectory
from lintas_intake.domain.organisation import OrganisationKind
from lintas_shared.mongo import make_mongo_client
from lintas_shared.person_tokens import Role

#: The kinds of organisation a role may belong to: an admin only to Lintas'
#: administrators, a lawyer only to a legal partner, a caseworker only to an NGO.
ROLE_KINDS: dict[Role, frozenset[OrganisationKind]] = {
    Role.CASEWORKER: frozenset({OrganisationKind.NGO}),
    Role.PROGRAMME: frozenset({OrganisationKind.NGO, OrganisationKind.ADMIN}),
    Role.ORG_ADMIN: frozenset({OrganisationKind.NGO, OrganisationKind.LEGAL}),
    Role.LAWYER: frozenset({OrganisationKind.LEGAL}),
    Role.ADMIN: frozenset({OrganisationKind.ADMIN}),
}


@dataclass(frozen=True)
class PeopleTarget:
    """Where people and organisations live, and how the console is reached."""

    mongodb_uri: str
    console_database: str
    intake_database: str
    api_key_pepper: str
    public_url: str
    link_lifetime: timedelta


def _summary(person: Person) -> dict[str, Any]:
    return {
        "id": person.id,
        "email": person.email,
        "organisation_id": person.organisation_id,
        "role": person.role.value,
        "name": person.display_name,
        "language": person.language,
        "disabled": person.disabled,
        "has_password": person.has_password,
        "has_second_factor": person.has_second_factor,
    }


class PeopleCommands:
    """`lintas user create | disable | reset-2fa | link` on the console's store."""

    def __init__(self, target: PeopleTarget) -> None:
        self._target = target
        self._client = make_mongo_client(target.mongodb_uri, app_name="lintas-cli")
        console = self._client[target.console_database]
        self._people = MongoPeopleStore(console["people"])
        self._admin = PeopleAdmin(
            self._people,
            MongoSessionStore(console["sessions"]),
            Passwords(),
            public_url=target.public_url,
            link_lifetime=target.link_lifetime,
        )
        self._organisations = MongoOrganisationDirectory(
            self._client[target.intake_database]["organisations"], target.api_key_pepper
        )

    async def close(self) -> None:
        """Disconnect."""
        await self._client.close()

    def _link_answer(self, person: Person, link: str) -> dict[str, Any]:
        hours = self._target.link_lifetime.total_seconds() / 3600
        return {
            **_summary(person),
            "link": link,
            "link_valid_hours": int(hours) if hours.is_integer() else round(hours, 2),
        }

    async def create(
        self, organisation_id: str, role: Role, email: str, name: str | None, language: str
    ) -> dict[str, Any]:
        """A person of an existing organisation, and the link that sets their password."""
        organisation = await self._organisations.get(organisation_id)
        if organisation is None:
            raise PeopleError(f"no organisation {organisation_id!r} (see `lintas org list`)")
        if organisation.kind not in ROLE_KINDS[role]:
            kinds = ", ".join(sorted(kind.value for kind in ROLE_KINDS[role]))
            raise PeopleError(
                f"the role {role.value} is for an organisation of kind {kinds}; "
                f"{organisation_id} is of kind {organisation.kind.value}"
            )
        await self._people.ensure_indexes()
        invitation = await self._admin.invite(
            None, organisation_id, role, email, name or "", language
        )
        return self._link_answer(invitation.person, invitation.link)

    async def disable(self, email: str) -> dict[str, Any]:
        """Stop a person signing in; their sessions end now."""
        person = await self._admin.find(email)
        return _summary(await self._admin.disable(None, person.id))

    async def reset_second_factor(self, email: str) -> dict[str, Any]:
        """Forget a person's authenticator; they enrol a new one at their next sign-in."""
        person = await self._admin.find(email)
        return _summary(await self._admin.reset_second_factor(None, person.id))

    async def new_link(self, email: str) -> dict[str, Any]:
        """A fresh one-time link to set a password (any earlier link stops working)."""
        person = await self._admin.find(email)
        return self._link_answer(person, await self._admin.new_link(None, person.id))

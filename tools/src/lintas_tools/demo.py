"""Demo data for the local stack: an Indonesian NGO, two legal partners, an admin, and
one console person per role in them; the console's signing key."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lintas_console.adapters.mongo_people import MongoPeopleStore, MongoSessionStore
from lintas_console.adapters.passwords import Passwords
from lintas_console.handlers import PeopleAdmin
from lintas_intake.adapters.organisation_directory import MongoOrganisationDirectory
from lintas_intake.domain.organisation import Organisation, OrganisationKind
from lintas_referral.adapters.partner_directory import MongoPartnerDirectory
from lintas_referral.adapters.routing_repository import MongoRoutingRepository
from lintas_referral.domain.routing import Partner
from lintas_shared.mongo import make_mongo_client
from lintas_shared.person_tokens import Role, new_signing_key
from lintas_shared.security import hash_api_key, new_api_key

DEMO_ORGANISATIONS = (
    Organisation(
        "org-demo-ngo-id", "Serikat Buruh Migran Contoh (demo)", OrganisationKind.NGO, "ID"
    ),
    Organisation(
        "org-demo-legal-hk", "Hong Kong Legal Partner (demo)", OrganisationKind.LEGAL, "HK"
    ),
    Organisation(
        "org-demo-legal-sg", "Singapore Legal Partner (demo)", OrganisationKind.LEGAL, "SG"
    ),
    Organisation("org-demo-admin", "Lintas administrators (demo)", OrganisationKind.ADMIN, "ID"),
)
#: Names of the keys in demo-keys.json, in the order of DEMO_ORGANISATIONS.
KEY_NAMES = ("ngo_id", "legal_hk", "legal_sg", "admin")
#: Where demo-keys.json keeps the console's demo people: {name: {"email", "password"}}.
PEOPLE_KEY = "console"


@dataclass(frozen=True)
class DemoPerson:
    """A console person of a demo organisation; `name` is their entry in demo-keys.json."""

    name: str
    organisation_id: str
    role: Role
    email: str
    display_name: str


DEMO_PEOPLE = (
    DemoPerson(
        "caseworker",
        "org-demo-ngo-id",
        Role.CASEWORKER,
        "caseworker@demo.lintas.test",
        "Sari (demo caseworker)",
    ),
    DemoPerson(
        "org_admin",
        "org-demo-ngo-id",
        Role.ORG_ADMIN,
        "org-admin@demo.lintas.test",
        "Dewi (demo organisation admin)",
    ),
    DemoPerson(
        "programme",
        "org-demo-ngo-id",
        Role.PROGRAMME,
        "programme@demo.lintas.test",
        "Rina (demo programme officer)",
    ),
    DemoPerson(
        "lawyer_hk",
        "org-demo-legal-hk",
        Role.LAWYER,
        "lawyer-hk@demo.lintas.test",
        "Mei Ling (demo lawyer, Hong Kong)",
    ),
    DemoPerson(
        "lawyer_sg",
        "org-demo-legal-sg",
        Role.LAWYER,
        "lawyer-sg@demo.lintas.test",
        "Priya (demo lawyer, Singapore)",
    ),
    DemoPerson(
        "admin", "org-demo-admin", Role.ADMIN, "admin@demo.lintas.test", "Budi (demo admin)"
    ),
)


@dataclass(frozen=True)
class DemoTarget:
    """Where the demo data goes."""

    mongodb_uri: str
    intake_database: str
    referral_database: str
    api_key_pepper: str
    #: Open referrals each demo partner takes at most; None: the partner default (50).
    partner_capacity: int | None = None


def _read(path: Path) -> dict[str, Any]:
    found = json.loads(path.read_text()) if path.exists() else {}
    if not isinstance(found, dict):
        raise RuntimeError(f"{path} is not a JSON object")
    return found


def _write(path: Path, content: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")
    path.chmod(0o600)


def load_or_create_keys(path: Path) -> dict[str, str]:
    """The demo API keys from `path`, creating any that are missing (re-running keeps
    them). Other entries of the file (the console's people) are kept as they are."""
    content = _read(path)
    keys = {name: value for name, value in content.items() if isinstance(value, str)}
    for name in KEY_NAMES:
        keys.setdefault(name, new_api_key())
    keys.setdefault("sms_inbound_token", new_api_key("sms"))
    _write(path, {**content, **keys})
    return keys


def load_or_create_people(path: Path) -> dict[str, dict[str, str]]:
    """The console's demo people from `path` (its "console" entry): for each of
    DEMO_PEOPLE, {"email", "password"}. Missing passwords are made once and kept."""
    content = _read(path)
    stored = content.get(PEOPLE_KEY)
    stored = stored if isinstance(stored, dict) else {}
    people: dict[str, dict[str, str]] = {}
    for person in DEMO_PEOPLE:
        previous = stored.get(person.name)
        password = previous.get("password") if isinstance(previous, dict) else None
        if not isinstance(password, str) or not password:
            password = secrets.token_urlsafe(18)
        people[person.name] = {"email": person.email, "password": password}
    _write(path, {**content, PEOPLE_KEY: people})
    return people


def load_or_create_signing_key(path: Path) -> str:
    """The console's Ed25519 signing key at `path` (PEM, mode 0600), made once; returns
    its public key (PEM), which intake and referral are given to verify person tokens."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise RuntimeError(f"{path} is not an Ed25519 private key")
        return (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
    private_pem, public_pem = new_signing_key()
    write_signing_key(path, private_pem)
    return public_pem


def write_signing_key(path: Path, private_pem: str) -> None:
    """Write a private key readable by its owner only (never world-readable, not even
    for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(private_pem)
    path.chmod(0o600)


async def seed_demo(target: DemoTarget, keys: dict[str, str]) -> None:
    """Create or refresh the demo organisations in intake and the partners in referral."""
    client = make_mongo_client(target.mongodb_uri, app_name="lintas-demo-seed")
    try:
        intake = client[target.intake_database]
        directory = MongoOrganisationDirectory(intake["organisations"], target.api_key_pepper)
        await directory.ensure_indexes()
        for organisation, key_name in zip(DEMO_ORGANISATIONS, KEY_NAMES, strict=True):
            await directory.upsert(organisation, [keys[key_name]])
        referral = client[target.referral_database]
        partners = MongoPartnerDirectory(
            referral["partners"], MongoRoutingRepository(referral["routings"])
        )
        for organisation, key_name in zip(DEMO_ORGANISATIONS, KEY_NAMES, strict=True):
            if organisation.kind is OrganisationKind.LEGAL:
                partner = Partner(
                    id=organisation.id, name=organisation.name, country=organisation.country
                )
                if target.partner_capacity is not None:
                    partner = dataclasses.replace(partner, capacity=target.partner_capacity)
                await partners.upsert(
                    partner, api_key_hashes=[hash_api_key(keys[key_name], target.api_key_pepper)]
                )
    finally:
        await client.close()


async def seed_demo_people(
    mongodb_uri: str, console_database: str, people: Mapping[str, Mapping[str, str]]
) -> None:
    """Create or refresh the console's demo people (DEMO_PEOPLE) in `console_database`,
    with the passwords in `people` (from `load_or_create_people`)."""
    client = make_mongo_client(mongodb_uri, app_name="lintas-demo-seed")
    try:
        database = client[console_database]
        store = MongoPeopleStore(database["people"])
        await store.ensure_indexes()
        admin = PeopleAdmin(
            store,
            MongoSessionStore(database["sessions"]),
            Passwords(),
            public_url="http://127.0.0.1",  # no link is made for a demo person
            link_lifetime=timedelta(hours=1),
        )
        for person in DEMO_PEOPLE:
            await admin.ensure_demo_person(
                person.organisation_id,
                person.role,
                person.email,
                people[person.name]["password"],
                person.display_name,
            )
    finally:
        await client.close()

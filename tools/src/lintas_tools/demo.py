"""Demo organisations for the local stack: an Indonesian NGO, two legal partners, an admin."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lintas_intake.adapters.organisation_directory import MongoOrganisationDirectory
from lintas_intake.domain.organisation import Organisation, OrganisationKind
from lintas_referral.adapters.partner_directory import MongoPartnerDirectory
from lintas_referral.adapters.routing_repository import MongoRoutingRepository
from lintas_referral.domain.routing import Partner
from lintas_shared.mongo import make_mongo_client
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


@dataclass(frozen=True)
class DemoTarget:
    """Where the demo data goes."""

    mongodb_uri: str
    intake_database: str
    referral_database: str
    api_key_pepper: str


def load_or_create_keys(path: Path) -> dict[str, str]:
    """The demo keys from `path`, creating any that are missing (re-running keeps them)."""
    keys: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    for name in KEY_NAMES:
        keys.setdefault(name, new_api_key())
    keys.setdefault("sms_inbound_token", new_api_key("sms"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(keys, indent=2) + "\n")
    path.chmod(0o600)
    return keys


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
                await partners.upsert(
                    Partner(
                        id=organisation.id, name=organisation.name, country=organisation.country
                    ),
                    api_key_hashes=[hash_api_key(keys[key_name], target.api_key_pepper)],
                )
    finally:
        await client.close()

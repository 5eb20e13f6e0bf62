"""Operator commands for organisations and their API keys.

Keys are printed once and stored only hashed. A legal partner is also registered in
referral's partner directory (with the same key hashes), because lawyers use
referral's API; revoking a key removes it from both at once, and waits until no service
instance can still remember it (`LINTAS_API_KEY_CACHE_SECONDS`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from lintas_intake.adapters.organisation_directory import MongoOrganisationDirectory
from lintas_intake.domain.organisation import Organisation, OrganisationKind
from lintas_referral.adapters.partner_directory import MongoPartnerDirectory
from lintas_referral.adapters.routing_repository import MongoRoutingRepository
from lintas_referral.domain.routing import Partner
from lintas_shared.ids import new_id
from lintas_shared.mongo import make_mongo_client
from lintas_shared.settings import DEFAULT_API_KEY_CACHE_SECONDS


@dataclass(frozen=True)
class Directories:
    """Where organisations live."""

    mongodb_uri: str
    intake_database: str
    referral_database: str
    api_key_pepper: str
    #: How long a service instance remembers who is behind a key (the services' setting).
    api_key_cache_seconds: float = DEFAULT_API_KEY_CACHE_SECONDS


class OrganisationAdmin:
    """Creates organisations and manages their keys across intake and referral."""

    def __init__(self, target: Directories) -> None:
        self._remembered_for = target.api_key_cache_seconds
        self._client = make_mongo_client(target.mongodb_uri, app_name="lintas-cli")
        self._intake = MongoOrganisationDirectory(
            self._client[target.intake_database]["organisations"], target.api_key_pepper
        )
        referral = self._client[target.referral_database]
        self._partners = MongoPartnerDirectory(
            referral["partners"], MongoRoutingRepository(referral["routings"])
        )

    async def close(self) -> None:
        """Disconnect."""
        await self._client.close()

    async def create(
        self,
        name: str,
        kind: OrganisationKind,
        country: str,
        languages: tuple[str, ...],
        claim_types: tuple[str, ...],
        capacity: int | None,
    ) -> dict[str, Any]:
        """A new organisation and its first key (shown once)."""
        await self._intake.ensure_indexes()
        organisation = Organisation(
            id=f"org-{new_id()[:12]}",
            name=name,
            kind=kind,
            country=country,
            languages=languages,
            claim_types=claim_types,
            capacity=capacity,
        )
        key_id, key = await self._intake.create(organisation)
        await self._sync_partner(organisation.id)
        return {
            "id": organisation.id,
            "name": name,
            "kind": kind.value,
            "country": country,
            "key_id": key_id,
            "api_key": key,
        }

    async def issue_key(self, organisation_id: str) -> dict[str, str]:
        """Another key for an organisation (shown once)."""
        key_id, key = await self._intake.issue_key(organisation_id)
        await self._sync_partner(organisation_id)
        return {"id": organisation_id, "key_id": key_id, "api_key": key}

    async def revoke_key(self, organisation_id: str, key_id: str) -> dict[str, str]:
        """Revoke a key everywhere; it answers 401 from the next request on (this waits
        until no instance can still remember it)."""
        await self._intake.revoke_key(organisation_id, key_id)
        await self._sync_partner(organisation_id)
        await asyncio.sleep(self._remembered_for)
        return {
            "id": organisation_id,
            "key_id": key_id,
            "status": "revoked",
            # What the wait covered: services remembering keys longer accept it longer.
            "waited_seconds": f"{self._remembered_for:g} (LINTAS_API_KEY_CACHE_SECONDS)",
        }

    async def list(self) -> list[dict[str, Any]]:
        """Every organisation with its keys' ids and dates (never the keys)."""
        return [
            {
                "id": o.id,
                "name": o.name,
                "kind": o.kind.value,
                "country": o.country,
                "languages": list(o.languages),
                "claim_types": list(o.claim_types),
                "capacity": o.capacity,
                "keys": [
                    {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in key.items()}
                    for key in keys
                ],
            }
            for o, keys in await self._intake.all()
        ]

    async def _sync_partner(self, organisation_id: str) -> None:
        organisation = await self._intake.get(organisation_id)
        if organisation is None or organisation.kind is not OrganisationKind.LEGAL:
            return
        hashes = await self._intake.active_key_hashes(organisation_id)
        await self._partners.upsert(
            Partner(
                id=organisation.id,
                name=organisation.name,
                country=organisation.country,
                claim_types=frozenset(organisation.claim_types),
                capacity=organisation.capacity or 50,
            ),
            api_key_hashes=hashes,
        )

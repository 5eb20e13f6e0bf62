"""Legal partners in MongoDB."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from lintas_shared.mongo import Document
from pymongo.asynchronous.collection import AsyncCollection

from lintas_referral.adapters.routing_repository import MongoRoutingRepository
from lintas_referral.domain.routing import Partner


class MongoPartnerDirectory:
    """The `PartnerDirectory`: partners with their load counted from open referrals."""

    def __init__(
        self, collection: AsyncCollection[Document], routings: MongoRoutingRepository
    ) -> None:
        self._collection = collection
        self._routings = routings

    async def in_country(self, country: str) -> Sequence[Partner]:
        """Active partners in `country`, each with its current number of open referrals."""
        partners = []
        async for doc in self._collection.find({"country": country, "active": True}):
            partners.append(
                Partner(
                    id=doc["_id"],
                    name=doc["name"],
                    country=doc["country"],
                    claim_types=frozenset(doc.get("claim_types", ())),
                    capacity=doc.get("capacity", 50),
                    open_referrals=await self._routings.open_referrals(doc["_id"]),
                )
            )
        return partners

    async def by_api_key_hash(self, key_hash: str) -> Partner | None:
        """The partner holding an API key with this hash (see lintas_shared.security)."""
        doc = await self._collection.find_one({"api_key_hashes": key_hash, "active": True})
        if doc is None:
            return None
        return Partner(
            id=doc["_id"],
            name=doc["name"],
            country=doc["country"],
            claim_types=frozenset(doc.get("claim_types", ())),
            capacity=doc.get("capacity", 50),
        )

    async def upsert(self, partner: Partner, api_key_hashes: list[str] | None = None) -> None:
        """Create or update a partner (operators and the demo seed)."""
        await self._collection.update_one(
            {"_id": partner.id},
            {
                "$set": {
                    "api_key_hashes": api_key_hashes or [],
                    "name": partner.name,
                    "country": partner.country,
                    "claim_types": sorted(partner.claim_types),
                    "capacity": partner.capacity,
                    "active": True,
                    "updated_at": datetime.now(UTC),
                }
            },
            upsert=True,
        )

"""Legal partners in MongoDB."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from lintas_shared.mongo import Document
from pymongo.asynchronous.collection import AsyncCollection

from lintas_referral.adapters.routing_repository import MongoRoutingRepository
from lintas_referral.domain.routing import Partner
from lintas_referral.webhooks import Registration, scheme_of


class MongoPartnerDirectory:
    """The `PartnerDirectory`: partners with their load counted from open referrals."""

    def __init__(
        self, collection: AsyncCollection[Document], routings: MongoRoutingRepository
    ) -> None:
        self._collection = collection
        self._routings = routings

    async def in_country(self, country: str) -> Sequence[Partner]:
        """Active partners in `country`, each with its current number of open referrals."""
        docs = [d async for d in self._collection.find({"country": country, "active": True})]
        load = await self._routings.open_referrals(d["_id"] for d in docs)
        return [
            Partner(
                id=doc["_id"],
                name=doc["name"],
                country=doc["country"],
                claim_types=frozenset(doc.get("claim_types", ())),
                capacity=doc.get("capacity", 50),
                open_referrals=load[doc["_id"]],
                languages=frozenset(doc.get("languages", ())),
            )
            for doc in docs
        ]

    async def by_api_key_hash(self, key_hash: str) -> Partner | None:
        """The partner holding an API key with this hash (see lintas_shared.security)."""
        doc = await self._collection.find_one({"api_key_hashes": key_hash, "active": True})
        return None if doc is None else _caller_partner(doc)

    async def calling(self, partner_id: str) -> Partner | None:
        """An active partner by id, as a caller (a person's token names it); its load is
        not counted."""
        doc = await self._collection.find_one({"_id": partner_id, "active": True})
        return None if doc is None else _caller_partner(doc)

    async def by_id(self, partner_id: str) -> Partner | None:
        """An active partner by id (for handing a case on)."""
        doc = await self._collection.find_one({"_id": partner_id, "active": True})
        if doc is None:
            return None
        found = [p for p in await self.in_country(doc["country"]) if p.id == partner_id]
        return found[0] if found else None

    async def in_countries(self, countries: Iterable[str]) -> dict[str, Sequence[Partner]]:
        """Active partners of each country, with their load."""
        return {country: await self.in_country(country) for country in sorted(set(countries))}

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
                    "languages": sorted(partner.languages),
                    "active": True,
                    "updated_at": datetime.now(UTC),
                }
            },
            upsert=True,
        )

    async def set_webhook(self, partner_id: str, registration: Registration) -> bool:
        """Register (or replace) the partner's webhook URL, sealed secret and scheme."""
        result = await self._collection.update_one(
            {"_id": partner_id},
            {
                "$set": {
                    "webhook": {
                        "url": registration.url,
                        "secret": registration.sealed_secret,
                        "signature_scheme": registration.signature_scheme,
                    }
                }
            },
        )
        return result.matched_count == 1

    async def webhook(self, partner_id: str) -> Registration | None:
        """The partner's webhook registration, if it made one (one stored before schemes
        existed is signed the deprecated way, as its receiver expects)."""
        doc = await self._collection.find_one({"_id": partner_id, "active": True})
        hook = (doc or {}).get("webhook")
        if not hook:
            return None
        return Registration(hook["url"], hook["secret"], scheme_of(hook.get("signature_scheme")))


def _caller_partner(doc: Document) -> Partner:
    return Partner(
        id=doc["_id"],
        name=doc["name"],
        country=doc["country"],
        claim_types=frozenset(doc.get("claim_types", ())),
        capacity=doc.get("capacity", 50),
        languages=frozenset(doc.get("languages", ())),
    )

"""Legal partners in MongoDB."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from lintas_shared.mongo import Document
from pymongo.asynchronous.collection import AsyncCollection

from lintas_referral.adapters.routing_repository import MongoRoutingRepository
from lintas_referral.domain.routing import Partner
from lintas_referral.webhooks import Registration, SecretBox, scheme_of


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
            {"_id": partner_id}, {"$set": {"webhook": _webhook_document(registration)}}
        )
        return result.matched_count == 1

    async def replace_webhook(
        self, partner_id: str, expected: Registration, registration: Registration
    ) -> bool:
        """Replace the registration only if its sealed secret is still `expected`'s (a
        concurrent rotation or registration wins; the caller reads again)."""
        result = await self._collection.update_one(
            {"_id": partner_id, "webhook.secret": expected.sealed_secret},
            {"$set": {"webhook": _webhook_document(registration)}},
        )
        return result.modified_count == 1

    async def webhook(self, partner_id: str) -> Registration | None:
        """The partner's webhook registration, if it made one (one stored before schemes
        existed is signed the deprecated way, as its receiver expects)."""
        doc = await self._collection.find_one({"_id": partner_id, "active": True})
        hook = (doc or {}).get("webhook")
        if not hook:
            return None
        return _registration(hook)

    async def reseal_webhook_secrets(self, box: SecretBox) -> ResealReport:
        """Seal every stored webhook secret (and an overlapping old one) under the current
        master key: part of `lintas keys rotate`. Each partner is replaced only if it is
        unchanged since read; re-running finds nothing left to do."""
        report = ResealReport()
        async for doc in self._collection.find({"webhook": {"$exists": True}}):
            hook = doc.get("webhook")
            if not hook:
                continue
            stored = _registration(hook)
            sealed = [stored.sealed_secret, stored.previous_sealed_secret]
            if all(s is None or box.is_current(s) for s in sealed):
                report.current += 1
                continue
            try:
                resealed = replace(
                    stored,
                    sealed_secret=box.seal(doc["_id"], box.open(doc["_id"], stored.sealed_secret)),
                    previous_sealed_secret=(
                        None
                        if stored.previous_sealed_secret is None
                        else box.seal(
                            doc["_id"], box.open(doc["_id"], stored.previous_sealed_secret)
                        )
                    ),
                )
            except ValueError:  # sealed by a master key these settings do not hold
                report.unreadable += 1
                continue
            if await self.replace_webhook(doc["_id"], stored, resealed):
                report.resealed += 1
        return report


@dataclass
class ResealReport:
    """What `reseal_webhook_secrets` did."""

    resealed: int = 0
    current: int = 0
    unreadable: int = 0


def _webhook_document(registration: Registration) -> Document:
    doc: Document = {
        "url": registration.url,
        "secret": registration.sealed_secret,
        "signature_scheme": registration.signature_scheme,
    }
    if registration.previous_sealed_secret is not None:
        doc["previous_secret"] = registration.previous_sealed_secret
        doc["previous_until"] = registration.previous_until
    return doc


def _registration(hook: Document) -> Registration:
    until = hook.get("previous_until")
    if isinstance(until, datetime) and until.tzinfo is None:
        until = until.replace(tzinfo=UTC)  # the store hands back naive UTC
    return Registration(
        hook["url"],
        hook["secret"],
        scheme_of(hook.get("signature_scheme")),
        previous_sealed_secret=hook.get("previous_secret"),
        previous_until=until,
    )


def _caller_partner(doc: Document) -> Partner:
    return Partner(
        id=doc["_id"],
        name=doc["name"],
        country=doc["country"],
        claim_types=frozenset(doc.get("claim_types", ())),
        capacity=doc.get("capacity", 50),
        languages=frozenset(doc.get("languages", ())),
    )

"""Legal partners in MongoDB, each with its load: the cases holding an open referral.

A partner's document counts its load itself: `open` (how many cases hold an open
referral with it) and `open_cases` (which ones). Taking capacity is one conditional
`find_one_and_update` on that document (`open` below the capacity and the case not yet
counted), so two instances can never both take a partner's last place, and a
redelivered claim or release of the same case counts once. The routing documents stay
the truth (`open_partner_ids`): a partner document without the fields (stored before
them) gets them counted from the routings once, at start-up (`migrate_load`); until
then it is taken for full.

Partners rarely change: the routing decision reads them through a short-lived
in-process cache (`ttl`), which the claims of this process keep up to date.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from lintas_shared.logging import get_logger
from lintas_shared.mongo import Document
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from lintas_referral.domain.routing import Partner
from lintas_referral.webhooks import Registration, SecretBox, scheme_of

log = get_logger(__name__)
#: Seconds a country's partners are reused before they are read again.
DEFAULT_TTL = 5.0


class OpenCases(Protocol):
    """Where a partner's load is counted from when its document has no count yet."""

    async def open_cases_by_partner(self, partner_ids: Iterable[str]) -> dict[str, list[str]]:
        """The cases holding an open referral with each partner."""
        ...


class MongoPartnerDirectory:
    """The `PartnerDirectory`: partners with their load, and the atomic capacity claim."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        routings: OpenCases | None = None,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._collection = collection
        self._routings = routings
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, list[Partner]]] = {}

    async def ensure_indexes(self) -> None:
        """The indexes of the routing decision's and the API key's queries."""
        await self._collection.create_index([("country", ASCENDING)], name="country")
        await self._collection.create_index([("api_key_hashes", ASCENDING)], name="api_key_hashes")

    async def migrate_load(self) -> int:
        """Give every partner stored without a load its count, from the routings' open
        referrals (idempotent: a partner that has one is left alone)."""
        if self._routings is None:
            return 0
        missing = [
            d["_id"] async for d in self._collection.find({"open": {"$exists": False}}, {"_id": 1})
        ]
        if not missing:
            return 0
        cases = await self._routings.open_cases_by_partner(missing)
        migrated = 0
        for partner_id in missing:
            counted = sorted(set(cases.get(partner_id, ())))
            result = await self._collection.update_one(
                {"_id": partner_id, "open": {"$exists": False}},
                {"$set": {"open_cases": counted, "open": len(counted)}},
            )
            migrated += result.modified_count
        log.info("partner load counted from the routings", partners=migrated)
        return migrated

    async def in_country(self, country: str) -> Sequence[Partner]:
        """Active partners in `country`, each with its current number of open cases."""
        now = self._clock()
        cached = self._cache.get(country)
        if cached is not None and now - cached[0] < self._ttl:
            return list(cached[1])
        docs = [d async for d in self._collection.find({"country": country, "active": True})]
        partners = sorted((_partner(doc) for doc in docs), key=lambda p: p.id)
        self._cache[country] = (now, partners)
        return list(partners)

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
        """An active partner by id, with its load (for handing a case on)."""
        doc = await self._collection.find_one({"_id": partner_id, "active": True})
        return None if doc is None else _partner(doc)

    async def in_countries(self, countries: Iterable[str]) -> dict[str, Sequence[Partner]]:
        """Active partners of each country, with their load."""
        return {country: await self.in_country(country) for country in sorted(set(countries))}

    async def claim(self, partner_id: str, case_id: str, capacity: int | None) -> bool:
        """Count the case in the partner's load, if it has room (`capacity`; None: the
        partner is chosen by a person, room or not). True if the case is counted (now,
        or already before); False if the partner is full or gone."""
        where: Document = {"_id": partner_id, "open_cases": {"$ne": case_id}}
        if capacity is not None:
            where["open"] = {"$lt": capacity}
        doc = await self._collection.find_one_and_update(
            where,
            {"$inc": {"open": 1}, "$push": {"open_cases": case_id}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            self._remember(partner_id, doc.get("country"), int(doc.get("open", 0)))
            return True
        # Either counted already (a redelivery, a retried write) or full.
        counted = await self._collection.find_one(
            {"_id": partner_id, "open_cases": case_id}, {"_id": 1}
        )
        if counted is None:
            self._forget(partner_id)
        return counted is not None

    async def release(self, partner_id: str, case_id: str) -> None:
        """The case no longer holds an open referral with the partner (once: a second
        release of the same case changes nothing)."""
        doc = await self._collection.find_one_and_update(
            {"_id": partner_id, "open_cases": case_id},
            {"$inc": {"open": -1}, "$pull": {"open_cases": case_id}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            self._remember(partner_id, doc.get("country"), int(doc.get("open", 0)))

    def _remember(self, partner_id: str, country: object, open_cases: int) -> None:
        """Keep the cached load of a partner as the store just answered it."""
        cached = self._cache.get(str(country))
        if cached is None:
            return
        at, partners = cached
        updated = [
            replace(p, open_referrals=max(0, open_cases)) if p.id == partner_id else p
            for p in partners
        ]
        self._cache[str(country)] = (at, updated)

    def _forget(self, partner_id: str) -> None:
        """Read the partner's country again next time (it was full, or changed)."""
        for country, (_, partners) in list(self._cache.items()):
            if any(p.id == partner_id for p in partners):
                del self._cache[country]

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
                },
                # `open_cases` comes with the first claim (the local FerretDB drops an
                # empty array given to $setOnInsert); `open` marks the load as counted.
                "$setOnInsert": {"open": 0},
            },
            upsert=True,
        )
        self._cache.clear()

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


def _partner(doc: Document) -> Partner:
    return replace(_caller_partner(doc), open_referrals=max(0, int(doc.get("open", 0))))


def _caller_partner(doc: Document) -> Partner:
    return Partner(
        id=doc["_id"],
        name=doc["name"],
        country=doc["country"],
        claim_types=frozenset(doc.get("claim_types", ())),
        capacity=doc.get("capacity", 50),
        languages=frozenset(doc.get("languages", ())),
    )

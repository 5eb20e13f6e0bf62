"""Legal partners in MongoDB, each with its load: the open referrals counted on it.

A partner's document counts its load itself: `open` (how many open referrals it holds)
and `open_referrals` (which ones: referral id -> the case, the owner of the claim and
when it was made), with `load_seq`, the load's own version, bumped by every claim and
release. Taking capacity is one conditional `find_one_and_update` on that document
(`open` below the capacity and the referral not yet counted), so two instances can never
both take a partner's last place, and a redelivered claim or release of the same
referral counts once. The routing documents stay the truth (`open_partner_ids`): the
reconciler (`lintas_referral.partner_load`) recounts every partner from them at start-up
and periodically; a partner stored before it counted its load is taken for full until
then.

Partners rarely change: the routing decision reads them through a short-lived
in-process cache (`ttl`), which the claims of this process keep up to date.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from lintas_shared.logging import get_logger
from lintas_shared.mongo import Document
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from lintas_referral.domain.routing import Partner
from lintas_referral.partner_load import (
    DEFAULT_GRACE,
    LoadClaim,
    LoadReconciler,
    OpenReferrals,
    StoredLoad,
)
from lintas_referral.webhooks import Registration, SecretBox, scheme_of

log = get_logger(__name__)
#: Seconds a country's partners are reused before they are read again.
DEFAULT_TTL = 5.0


class MongoPartnerDirectory:
    """The `PartnerDirectory`: partners with their load, and the atomic capacity claim."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        routings: OpenReferrals | None = None,
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

    async def partner_ids(self) -> list[str]:
        """Every stored partner (the reconciler's list)."""
        return sorted([d["_id"] async for d in self._collection.find({}, {"_id": 1})])

    async def loads(self, partner_ids: Sequence[str]) -> list[StoredLoad]:
        """The stored load of each partner."""
        cursor = self._collection.find(
            {"_id": {"$in": list(partner_ids)}},
            {"open": 1, "open_referrals": 1, "load_seq": 1, "open_cases": 1},
        )
        return [_stored_load(doc) async for doc in cursor]

    async def replace_load(self, load: StoredLoad, claims: Mapping[str, LoadClaim]) -> bool:
        """Store `claims` as the partner's load if its load version is still `load.seq`."""
        where: Document = {"_id": load.partner_id}
        where["load_seq"] = {"$exists": False} if load.seq is None else load.seq
        result = await self._collection.update_one(
            where,
            {
                "$set": {
                    "open_referrals": {rid: _claim_document(c) for rid, c in claims.items()},
                    "open": len(claims),
                },
                "$inc": {"load_seq": 1},
                "$unset": {"open_cases": ""},
            },
        )
        if result.modified_count == 1:
            self._cache.clear()
        return result.modified_count == 1

    async def migrate_load(
        self, clock: Callable[[], datetime] | None = None, grace: timedelta = DEFAULT_GRACE
    ) -> int:
        """One reconciler pass (as at start-up): every partner's load recounted from the
        routings, those stored before they counted their load included; returns how
        many were corrected (a second pass finds nothing left to do)."""
        if self._routings is None:
            return 0
        fixer = LoadReconciler(self, self._routings, clock or _utc_now, grace)
        corrected = await fixer.run_once()
        log.info("partner load counted from the routings", partners=corrected)
        return corrected

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

    async def claim(self, partner_id: str, claim: LoadClaim, capacity: int | None) -> bool:
        """Count the referral in the partner's load, if it has room (`capacity`; None:
        the partner is chosen by a person, room or not). True if it is counted (now, or
        already before: the claim is then this owner's); False if the partner is full
        or gone."""
        field = f"open_referrals.{claim.referral_id}"
        entry = _claim_document(claim)
        where: Document = {"_id": partner_id, field: {"$exists": False}}
        if capacity is not None:
            where["open"] = {"$lt": capacity}
        doc = await self._collection.find_one_and_update(
            where,
            {"$inc": {"open": 1, "load_seq": 1}, "$set": {field: entry}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            self._remember(partner_id, doc.get("country"), int(doc.get("open", 0)))
            return True
        # Counted already (a redelivery, a retried write, or another run deciding the
        # same offer): this run holds the claim too, so another owner's release of its
        # own claim leaves it counted. Otherwise full (or released just now: passed over
        # this time, never counted twice).
        taken = await self._collection.update_one(
            {"_id": partner_id, field: {"$exists": True}},
            {
                "$addToSet": {f"{field}.owners": claim.owner},
                "$set": {f"{field}.at": claim.at},
                "$inc": {"load_seq": 1},
            },
        )
        if taken.matched_count == 1:
            return True
        self._forget(partner_id)
        return False

    async def release(self, partner_id: str, referral_id: str, owner: str | None = None) -> None:
        """The referral no longer counts in the partner's load (once: a second release
        changes nothing). With `owner`, only that run's claim is let go: the referral
        stops counting when no other run holds a claim on it."""
        field = f"open_referrals.{referral_id}"
        where: Document = {"_id": partner_id, field: {"$exists": True}}
        if owner is not None:
            where[f"{field}.owners"] = [owner]  # the only owner
        doc = await self._collection.find_one_and_update(
            where,
            {"$inc": {"open": -1, "load_seq": 1}, "$unset": {field: ""}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            self._remember(partner_id, doc.get("country"), int(doc.get("open", 0)))
            return
        if owner is not None:
            # Other runs hold it too (or it is gone): let go of this run's part only. Two
            # owners letting go at once may leave it counted with none: room kept free,
            # never overbooked, until the reconciler drops it.
            await self._collection.update_one(
                {"_id": partner_id, f"{field}.owners": owner},
                {"$pull": {f"{field}.owners": owner}, "$inc": {"load_seq": 1}},
            )

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


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _claim_document(claim: LoadClaim) -> Document:
    return {"case_id": claim.case_id, "owners": claim.owners, "at": claim.at}


def _load_claim(referral_id: str, entry: Document) -> LoadClaim:
    owners = [str(o) for o in entry.get("owners") or ()]
    return LoadClaim(
        str(entry.get("case_id", "")),
        referral_id,
        owners[0] if owners else "",
        _aware(entry.get("at")),
        tuple(owners[1:]),
    )


def _aware(value: object) -> datetime:
    if not isinstance(value, datetime):
        return datetime.min.replace(tzinfo=UTC)  # unreadable: old enough to be checked
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _stored_load(doc: Document) -> StoredLoad:
    claims = {
        str(rid): _load_claim(str(rid), entry)
        for rid, entry in (doc.get("open_referrals") or {}).items()
        if isinstance(entry, dict)
    }
    count = doc.get("open")
    return StoredLoad(
        partner_id=doc["_id"],
        seq=None if doc.get("load_seq") is None else int(doc["load_seq"]),
        count=None if count is None else int(count),
        claims=claims,
        legacy="open_cases" in doc,
    )

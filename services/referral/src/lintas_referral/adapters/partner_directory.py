"""Legal partners in MongoDB, each with its load: the open referrals counted on it.

A partner's document counts its load: `open` (how many open referrals it holds) and
`load_seq`, the load's own version, bumped by every change of the count. Which referrals
are counted is kept apart, one small document per counted referral in `partner_claims`
(`{_id: referral id, partner_id, case_id, owners, at}`, indexed on `partner_id`), so a
claim costs the same whatever the number of open referrals:

- claim: insert the referral's claim document (a duplicate key: counted before, this
  owner is added to it), then one conditional `update_one({_id, open < capacity},
  {$inc: {open: 1, load_seq: 1}})`; refused (full), the claim document is deleted again
  while it is still this run's alone;
- release: the claim document is deleted (with an owner: while that owner is its only
  one; otherwise that owner is pulled from it and it is deleted once none is left), and
  when a delete removed it, `update_one({_id}, {$inc: {open: -1, load_seq: 1}})`.

Two instances can never both take a partner's last place, and a redelivered claim or
release of the same referral counts once. A crash between the two steps leaves the count
one off: the reconciler (`lintas_referral.partner_load`) recounts every partner from the
claim documents and the routings (`open_partner_ids`, the truth) at start-up and
periodically; a partner stored before it counted its load is taken for full until then.
Loads counted by earlier versions in the partner's document (`open_referrals`, and the
older `open_cases`) are moved to claim documents at start-up (`migrate_load`).

Partners rarely change: the routing decision reads them through a short-lived
in-process cache (`ttl`), which the claims of this process keep up to date. That a
partner registered a webhook is kept as long, for the queueing of each referral event;
the answer a referral's claim read (its `find_one_and_update` returns the partner) serves
that referral's next event within as long, yes or no: a registration made through this
instance counts at once, one made through another within `ttl` seconds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from lintas_shared.caller_cache import CallerCache
from lintas_shared.logging import get_logger
from lintas_shared.mongo import CoalescingInserter, Document
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

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
#: Partners whose webhook answer is kept at most (a bound, not a working set).
MAX_KEPT = 10_000
#: The collection of the claims, next to the partners'.
CLAIMS = "partner_claims"


class MongoPartnerDirectory:
    """The `PartnerDirectory`: partners with their load, and the atomic capacity claim."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        routings: OpenReferrals | None = None,
        *,
        claims: AsyncCollection[Document] | None = None,
        ttl: float = DEFAULT_TTL,
        callers_ttl: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._collection = collection
        # The partner behind an API key or a lawyer's token (`lintas_shared.caller_cache`):
        # `callers_ttl` seconds, 0 (the operator tools) reads the store each time.
        self._by_key: CallerCache[Partner] = CallerCache(callers_ttl, clock=clock)
        self._by_id: CallerCache[Partner] = CallerCache(callers_ttl, clock=clock)
        self._claims = claims if claims is not None else collection.database[CLAIMS]
        self._claim_inserts = CoalescingInserter(self._claims)  # a batch's claims: one command
        self._routings = routings
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, list[Partner]]] = {}
        self._hooked: dict[str, float] = {}  # partner id -> when a webhook was seen
        # (partner id, referral id) -> whether the partner had a webhook when the referral
        # was counted, and when
        self._claimed_hooks: OrderedDict[tuple[str, str], tuple[bool, float]] = OrderedDict()

    async def ensure_indexes(self) -> None:
        """The indexes of the routing decision's, the API key's and the reconciler's
        queries."""
        await self._collection.create_index([("country", ASCENDING)], name="country")
        await self._collection.create_index([("api_key_hashes", ASCENDING)], name="api_key_hashes")
        await self._claims.create_index([("partner_id", ASCENDING)], name="partner_id")

    async def partner_ids(self) -> list[str]:
        """Every stored partner (the reconciler's list)."""
        return sorted([d["_id"] async for d in self._collection.find({}, {"_id": 1})])

    async def loads(self, partner_ids: Sequence[str]) -> list[StoredLoad]:
        """The stored load of each partner: its document first, then its claims (a claim
        made after the first read moves `load_seq` or is counted by its own step)."""
        ids = list(partner_ids)
        docs = [
            d
            async for d in self._collection.find(
                {"_id": {"$in": ids}},
                {"open": 1, "open_referrals": 1, "load_seq": 1, "open_cases": 1},
            )
        ]
        claims: dict[str, dict[str, LoadClaim]] = {}
        async for c in self._claims.find({"partner_id": {"$in": ids}}):
            claims.setdefault(str(c["partner_id"]), {})[str(c["_id"])] = _load_claim(
                str(c["_id"]), c
            )
        return [_stored_load(doc, claims.get(doc["_id"], {})) for doc in docs]

    async def replace_load(self, load: StoredLoad, claims: Mapping[str, LoadClaim]) -> bool:
        """Store `claims` as the partner's load if its load version is still `load.seq`:
        the count first (compare-and-set), then the claim documents dropped and added."""
        where: Document = {"_id": load.partner_id}
        where["load_seq"] = {"$exists": False} if load.seq is None else load.seq
        result = await self._collection.update_one(
            where,
            {
                "$set": {"open": len(claims)},
                "$inc": {"load_seq": 1},
                "$unset": {"open_cases": "", "open_referrals": ""},
            },
        )
        if result.modified_count != 1:
            return False
        self._cache.clear()
        for rid, dropped in load.claims.items():
            if rid in claims or rid in load.in_document:
                continue
            gone = await self._claims.delete_one(
                {"_id": rid, "partner_id": load.partner_id, "at": dropped.at}
            )
            if gone.deleted_count == 0:
                # Claimed again meanwhile (or released: its release counted it down): it
                # counts after all.
                await self._collection.update_one(
                    {"_id": load.partner_id}, {"$inc": {"open": 1, "load_seq": 1}}
                )
        for rid, kept in claims.items():
            if rid in load.claims and rid not in load.in_document:
                continue
            try:
                await self._claims.insert_one(_claim_document(load.partner_id, kept))
            except DuplicateKeyError:
                pass  # claimed meanwhile: that claim counts itself (one too many at worst)
        return True

    async def migrate_load(
        self, clock: Callable[[], datetime] | None = None, grace: timedelta = DEFAULT_GRACE
    ) -> int:
        """Start-up: the claims an earlier version kept in the partner's document moved to
        claim documents, then one reconciler pass (every partner's load recounted from the
        claims and the routings, those stored before they counted their load included);
        returns how many were corrected (a second pass finds nothing left to do)."""
        await self.migrate_claims()
        if self._routings is None:
            return 0
        fixer = LoadReconciler(self, self._routings, clock or _utc_now, grace)
        corrected = await fixer.run_once()
        log.info("partner load counted from the routings", partners=corrected)
        return corrected

    async def migrate_claims(self) -> int:
        """Each partner's `open_referrals` map moved to claim documents (idempotent: a
        claim document already there gains the map's owners), then unset if the load did
        not move meanwhile (else the reconciler's pass moves it). Returns how many
        partners were migrated."""
        migrated = 0
        found = self._collection.find(
            {"open_referrals": {"$exists": True}}, {"open_referrals": 1, "load_seq": 1}
        )
        async for doc in found:
            for rid, entry in (doc.get("open_referrals") or {}).items():
                if not isinstance(entry, dict):
                    continue
                claim = _load_claim(str(rid), entry)
                try:
                    await self._claims.insert_one(_claim_document(doc["_id"], claim))
                except DuplicateKeyError:
                    await self._claims.update_one(
                        {"_id": str(rid), "partner_id": doc["_id"]},
                        {"$addToSet": {"owners": {"$each": claim.owners}}},
                    )
            where: Document = {"_id": doc["_id"]}
            seq = doc.get("load_seq")
            where["load_seq"] = {"$exists": False} if seq is None else seq
            result = await self._collection.update_one(
                where, {"$unset": {"open_referrals": ""}, "$inc": {"load_seq": 1}}
            )
            migrated += result.modified_count
        if migrated:
            self._cache.clear()
            log.info("partner claims moved to their own documents", partners=migrated)
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

        async def find() -> Partner | None:
            doc = await self._collection.find_one({"api_key_hashes": key_hash, "active": True})
            return None if doc is None else _caller_partner(doc)

        return await self._by_key.get(key_hash, find)

    async def calling(self, partner_id: str) -> Partner | None:
        """An active partner by id, as a caller (a person's token names it); its load is
        not counted."""

        async def find() -> Partner | None:
            doc = await self._collection.find_one({"_id": partner_id, "active": True})
            return None if doc is None else _caller_partner(doc)

        return await self._by_id.get(partner_id, find)

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
        already before: the claim is then this owner's too); False if the partner is
        full or gone."""
        try:
            await self._claim_inserts.insert_one(_claim_document(partner_id, claim))
        except DuplicateKeyError:
            return await self._claim_again(partner_id, claim)
        where: Document = {"_id": partner_id}
        if capacity is not None:
            where["open"] = {"$lt": capacity}
        # The count's answer brings whether the partner registered a webhook, read in
        # the same step: the queueing of this referral's event needs no read of its own.
        # (The whole document: FerretDB v1 refuses findAndModify's `fields`; it is small.)
        counted = await self._collection.find_one_and_update(
            where, {"$inc": {"open": 1, "load_seq": 1}}
        )
        if counted is not None:
            self._adjust(partner_id, 1)
            self._note_webhook(partner_id, _hooked(counted), claim.referral_id)
            return True
        # Full (or gone): the claim document goes again, while it is this run's alone.
        gone = await self._claims.delete_one(
            {"_id": claim.referral_id, "partner_id": partner_id, "owners": [claim.owner]}
        )
        if gone.deleted_count == 1:
            self._forget(partner_id)
            return False
        # Another run deciding the same offer joined the claim meanwhile and was told it
        # is counted: it is counted then, room or not (as a hand-on is), never uncounted.
        await self._collection.update_one({"_id": partner_id}, {"$inc": {"open": 1, "load_seq": 1}})
        self._adjust(partner_id, 1)
        return True

    async def _claim_again(self, partner_id: str, claim: LoadClaim) -> bool:
        """Counted already (a redelivery, a retried write, or another run deciding the
        same offer): this run holds the claim too, so another owner's release of its own
        claim leaves it counted. Gone meanwhile (released, or refused just now): passed
        over this time, never counted twice."""
        taken = await self._claims.update_one(
            {"_id": claim.referral_id, "partner_id": partner_id},
            {"$addToSet": {"owners": claim.owner}, "$set": {"at": claim.at}},
        )
        if taken.matched_count == 1:
            # The claim moved: a reconciler pass reading meanwhile must not drop it.
            await self._collection.update_one({"_id": partner_id}, {"$inc": {"load_seq": 1}})
            return True
        self._forget(partner_id)
        return False

    async def release(self, partner_id: str, referral_id: str, owner: str | None = None) -> None:
        """The referral no longer counts in the partner's load (once: a second release
        changes nothing). With `owner`, only that run's claim is let go: the referral
        stops counting when no other run holds a claim on it."""
        where: Document = {"_id": referral_id, "partner_id": partner_id}
        if owner is not None:
            where["owners"] = [owner]  # the only owner
        gone = await self._claims.delete_one(where)
        if gone.deleted_count == 0 and owner is not None:
            # Other runs hold it too (or it is gone): let go of this run's part only, and
            # of the claim if no owner is left (of two letting go at once, one deletes it).
            pulled = await self._claims.update_one(
                {"_id": referral_id, "partner_id": partner_id, "owners": owner},
                {"$pull": {"owners": owner}},
            )
            if pulled.modified_count == 1:
                gone = await self._claims.delete_one(
                    {"_id": referral_id, "partner_id": partner_id, "owners": []}
                )
        if gone.deleted_count == 1:
            await self._collection.update_one(
                {"_id": partner_id}, {"$inc": {"open": -1, "load_seq": 1}}
            )
            self._adjust(partner_id, -1)

    def _adjust(self, partner_id: str, by: int) -> None:
        """Keep the cached load of a partner as this process just changed it."""
        for country, (at, partners) in list(self._cache.items()):
            if any(p.id == partner_id for p in partners):
                updated = [
                    replace(p, open_referrals=max(0, p.open_referrals + by))
                    if p.id == partner_id
                    else p
                    for p in partners
                ]
                self._cache[country] = (at, updated)

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
                # `open` marks the load as counted; which referrals are counted is kept
                # in `partner_claims`.
                "$setOnInsert": {"open": 0},
            },
            upsert=True,
        )
        self._cache.clear()
        self._by_key.clear()  # its keys may have changed
        self._by_id.forget(partner.id)
        self._hooked.clear()

    async def set_webhook(self, partner_id: str, registration: Registration) -> bool:
        """Register (or replace) the partner's webhook URL, sealed secret and scheme."""
        result = await self._collection.update_one(
            {"_id": partner_id}, {"$set": {"webhook": _webhook_document(registration)}}
        )
        self._forget_hooks(partner_id)
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
        self._forget_hooks(partner_id)
        return result.modified_count == 1

    async def webhook(self, partner_id: str) -> Registration | None:
        """The partner's webhook registration, if it made one (one stored before schemes
        existed is signed the deprecated way, as its receiver expects)."""
        doc = await self._collection.find_one({"_id": partner_id, "active": True})
        hook = (doc or {}).get("webhook")
        if not hook:
            return None
        return _registration(hook)

    async def has_webhook(self, partner_id: str, referral_id: str | None = None) -> bool:
        """Whether the active partner registered a webhook. A "yes" is kept `ttl` seconds;
        a "no" only as the answer the claim of `referral_id` read, for one event within
        `ttl` seconds: a registration made here counts at once, one made through another
        instance within `ttl` seconds."""
        now = self._clock()
        if referral_id is not None:
            answer = self._claimed_hooks.pop((partner_id, referral_id), None)
            if answer is not None and now - answer[1] < self._ttl:
                return answer[0]
        seen = self._hooked.get(partner_id)
        if seen is not None and now - seen < self._ttl:
            return True
        doc = await self._collection.find_one(
            {"_id": partner_id, "active": True}, {"webhook": 1, "active": 1}
        )
        hooked = _hooked(doc)
        self._note_webhook(partner_id, hooked)
        return hooked

    def _note_webhook(self, partner_id: str, hooked: bool, referral_id: str | None = None) -> None:
        """Keep a "yes" for the partner, and the answer read with a referral's claim."""
        if len(self._hooked) >= MAX_KEPT:
            self._hooked.clear()
        if hooked:
            self._hooked[partner_id] = self._clock()
        else:
            self._hooked.pop(partner_id, None)
        if referral_id is not None:
            if len(self._claimed_hooks) >= MAX_KEPT:
                # Answers whose events went to another instance are never asked for.
                self._claimed_hooks.popitem(last=False)
            self._claimed_hooks[(partner_id, referral_id)] = (hooked, self._clock())

    def _forget_hooks(self, partner_id: str) -> None:
        """The partner's registration changed here: read it again from the next event."""
        self._hooked.pop(partner_id, None)
        for key in [k for k in self._claimed_hooks if k[0] == partner_id]:
            del self._claimed_hooks[key]

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


def _hooked(doc: Document | None) -> bool:
    """Whether a partner's document (its `webhook` and `active`) says it is active and
    registered a webhook."""
    return doc is not None and doc.get("active") is True and bool(doc.get("webhook"))


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


def _claim_document(partner_id: str, claim: LoadClaim) -> Document:
    return {
        "_id": claim.referral_id,
        "partner_id": partner_id,
        "case_id": claim.case_id,
        "owners": claim.owners,
        "at": claim.at,
    }


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


def _stored_load(doc: Document, claims: Mapping[str, LoadClaim]) -> StoredLoad:
    """The partner's load: its claim documents, and those an earlier version still keeps
    in the partner's document (moved to claim documents when it is replaced)."""
    in_document = {
        str(rid): _load_claim(str(rid), entry)
        for rid, entry in (doc.get("open_referrals") or {}).items()
        if isinstance(entry, dict) and str(rid) not in claims
    }
    count = doc.get("open")
    return StoredLoad(
        partner_id=doc["_id"],
        seq=None if doc.get("load_seq") is None else int(doc["load_seq"]),
        count=None if count is None else int(count),
        claims={**claims, **in_document},
        legacy="open_cases" in doc or "open_referrals" in doc,
        in_document=frozenset(in_document),
    )

"""A keyed audit chain: numbered entries, each with an HMAC-SHA256 over its content and
the MAC of the one before, and a signed checkpoint of the head kept in another database.

The key (`LINTAS_AUDIT_KEY`) is never stored with the entries, so whoever can write the
audit collection cannot recompute the chain after changing or deleting an entry. Deleting
the newest entries leaves an intact-looking chain; the checkpoint (entry count and the
last MAC, signed with a key derived from the same secret) catches that, as long as it is
not rolled back to an older, genuinely signed copy: `verify` takes further anchors (e.g.
a head the operator saw earlier, kept off the database) for that.

Both intake's trail and referral's record of partner reads are such chains, told apart
by name (the name is covered by every MAC, so entries cannot move between chains).

Entries written before keying (no `v`) stay readable: a caller may pass the function of
its old unkeyed hash, and `verify` checks and counts that legacy prefix separately.
Records outside the numbered chain (non-integer `_id`, from before a store was chained)
are counted as unchained and not verified.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from lintas_shared.mongo import Document

#: The `v` of keyed entries; entries without `v` are legacy (unkeyed).
VERSION = 2
GENESIS = "0" * 64
#: The fields the chain itself sets; the rest of an entry is the caller's.
CHAIN_FIELDS = ("seq", "v", "prev", "mac")

LegacyHash = Callable[[Mapping[str, Any]], str]


def _subkey(secret: bytes, purpose: str) -> bytes:
    """One key per use, so an entry's MAC can never pass as a checkpoint's or vice versa."""
    return hmac.new(secret, f"lintas-audit:{purpose}".encode(), hashlib.sha256).digest()


def _canonical(content: Mapping[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Anchor:
    """A head the chain must still have: `count` entries, the last with MAC `last_mac`."""

    count: int
    last_mac: str
    source: str = "checkpoint"


@dataclass(frozen=True)
class ChainReport:
    """The result of verifying one chain.

    `entries` counts the numbered entries read, `legacy_entries` those of them written by
    the old unkeyed scheme, `unchained` older records outside the chain (not verified),
    `sealed` how many entries the signed checkpoint covers (entries after it are chained
    but their deletion would not show), `head` the count and last MAC found."""

    chain: str
    entries: int
    intact: bool
    legacy_entries: int = 0
    unchained: int = 0
    sealed: int | None = None
    head: dict[str, Any] | None = None
    first_broken_seq: int | None = None
    problem: str | None = None
    missing: list[int] = field(default_factory=list)


class AuditChain:
    """Append-only keyed chain of audit entries in one collection, `_id` = sequence number
    (an insert that loses the race for a number retries with the next one)."""

    def __init__(
        self,
        name: str,
        collection: AsyncCollection[Document],
        checkpoints: AsyncCollection[Document],
        secret: str,
        *,
        legacy_hash: LegacyHash | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the audit key is empty")
        self.name = name
        self._collection = collection
        self._checkpoints = checkpoints
        self._entry_key = _subkey(secret.encode(), "entry")
        self._checkpoint_key = _subkey(secret.encode(), "checkpoint")
        #: Checks entries written before keying; None: there were none.
        self.legacy_hash = legacy_hash
        # Where the chain ends: a hint only (appends by other processes move it on).
        self._last_seq: int | None = None

    # --- MACs -------------------------------------------------------------------------

    def entry_mac(self, entry: Mapping[str, Any]) -> str:
        """The MAC of an entry's content (all but `_id` and `mac`), chain name included."""
        content = {k: v for k, v in entry.items() if k not in ("_id", "mac")}
        message = self.name.encode() + b"\x1f" + _canonical(content)
        return hmac.new(self._entry_key, message, hashlib.sha256).hexdigest()

    def checkpoint_signature(self, count: int, last_mac: str) -> str:
        """The signature of a checkpoint of this chain."""
        message = f"{self.name}\x1f{count}\x1f{last_mac}".encode()
        return hmac.new(self._checkpoint_key, message, hashlib.sha256).hexdigest()

    # --- appending --------------------------------------------------------------------

    async def append(self, content: Mapping[str, Any]) -> dict[str, Any]:
        """Append one entry (`content` must be JSON-shaped: str, int, list, None…);
        returns it as stored. One insert, then one conditional write of the checkpoint."""
        clash = set(content) & {"_id", *CHAIN_FIELDS}
        if clash:
            raise ValueError(f"audit content may not set {sorted(clash)}")
        for _ in range(50):
            last_seq, last_mac = await self._tail()
            entry: dict[str, Any] = {
                "seq": last_seq + 1,
                "v": VERSION,
                **content,
                "prev": last_mac,
            }
            entry["mac"] = self.entry_mac(entry)
            try:
                await self._collection.insert_one({"_id": entry["seq"], **entry})
            except DuplicateKeyError:
                continue  # another append took this number: link to it instead
            self._last_seq = entry["seq"]
            await self._advance_checkpoint(entry["seq"], entry["mac"])
            return entry
        raise RuntimeError(f"could not append to the {self.name} audit chain")

    async def _advance_checkpoint(self, count: int, last_mac: str) -> None:
        """Move the signed checkpoint forward, never back: a slower append of a lower
        number finds a higher count there and leaves it."""
        try:
            await self._checkpoints.update_one(
                {"_id": self.name, "count": {"$lt": count}},
                {
                    "$set": {
                        "count": count,
                        "last_mac": last_mac,
                        "signature": self.checkpoint_signature(count, last_mac),
                    }
                },
                upsert=True,
            )
        except DuplicateKeyError:
            pass  # the checkpoint is already past this entry

    async def _tail(self) -> tuple[int, str]:
        """The last entry's number and MAC (0 and the genesis value when empty), found
        by `_id` from a hint and not by sorting: FerretDB v1 would read the whole trail
        to sort it, on every append."""
        hint = self._last_seq
        if hint is None:
            checkpoint = await self._checkpoints.find_one({"_id": self.name})
            if checkpoint is not None:
                hint = int(checkpoint["count"])
            else:  # first append since keying: find the end once
                found = await self._collection.find_one(
                    {"seq": {"$exists": True}}, sort=[("seq", DESCENDING)]
                )
                hint = 0 if found is None else int(found["seq"])
        last = await self._collection.find_one({"_id": hint}) if hint else None
        if last is not None:
            seq, mac = hint, _mac_of(last)
        elif hint:
            # The chain was cut below its recorded head (tampering): append after the
            # head, so the gap stays for `verify` to report instead of being filled in.
            found = await self._collection.find_one(
                {"seq": {"$exists": True}}, sort=[("seq", DESCENDING)]
            )
            seq, mac = hint, GENESIS if found is None else _mac_of(found)
        else:
            seq, mac = 0, GENESIS
        while True:
            following = await self._collection.find_one({"_id": seq + 1})
            if following is None:
                return seq, mac
            seq, mac = seq + 1, _mac_of(following)

    # --- reading and verifying --------------------------------------------------------

    async def checkpoint(self) -> Anchor | None:
        """The stored checkpoint if its signature holds; raises ValueError if it does not."""
        doc = await self._checkpoints.find_one({"_id": self.name})
        if doc is None:
            return None
        count, last_mac = int(doc.get("count", -1)), str(doc.get("last_mac", ""))
        expected = self.checkpoint_signature(count, last_mac)
        if not hmac.compare_digest(expected.encode(), str(doc.get("signature", "")).encode()):
            raise ValueError("the checkpoint's signature does not hold (forged or altered)")
        return Anchor(count, last_mac)

    async def verify(self, anchors: Sequence[Anchor] = ()) -> ChainReport:
        """Walk the chain from the start; report the first entry that does not hold, and
        check the signed checkpoint and any further `anchors` against it."""
        report = _Walk(self)
        try:
            checkpoint = await self.checkpoint()
        except ValueError as exc:
            return report.broken(None, str(exc))
        all_anchors = ([checkpoint] if checkpoint else []) + list(anchors)
        by_count: dict[int, list[Anchor]] = {}
        for anchor in all_anchors:
            by_count.setdefault(anchor.count, []).append(anchor)
        async for doc in self._collection.find({}).sort([("_id", 1)]):
            problem = report.step(doc)
            if problem is not None:
                return problem
            for anchor in by_count.get(report.count, []):
                if not hmac.compare_digest(anchor.last_mac.encode(), report.prev.encode()):
                    return report.broken(
                        report.count,
                        f"entry {report.count} differs from the {anchor.source} "
                        "(the chain was rewritten)",
                    )
        for anchor in all_anchors:
            if anchor.count > report.count:
                missing = list(range(report.count + 1, anchor.count + 1))
                return report.broken(
                    report.count + 1,
                    f"{_missing_text(missing)} (the {anchor.source} counts {anchor.count}, "
                    f"the chain ends at {report.count})",
                    missing,
                )
        if checkpoint is None and report.count > report.legacy:
            return report.broken(None, "keyed entries but no checkpoint (it was deleted)")
        return report.done(checkpoint)


def _missing_text(missing: Sequence[int]) -> str:
    if len(missing) == 1:
        return f"entry {missing[0]} is missing"
    return f"entries {missing[0]} to {missing[-1]} are missing"


def _mac_of(doc: Mapping[str, Any]) -> str:
    """An entry's link value: its MAC, or a legacy entry's unkeyed hash."""
    return str(doc["mac"] if "mac" in doc else doc["hash"])


class _Walk:
    """The state of one pass over the chain."""

    def __init__(self, chain: AuditChain) -> None:
        self.chain = chain
        self.count = 0
        self.legacy = 0
        self.unchained = 0
        self.prev = GENESIS

    def step(self, doc: Mapping[str, Any]) -> ChainReport | None:
        """Check one stored document; a report when the chain breaks there."""
        _id = doc["_id"]
        if not isinstance(_id, int) or isinstance(_id, bool):
            self.unchained += 1  # a record from before the store was chained
            return None
        expected = self.count + 1
        if _id != expected:
            missing = list(range(expected, _id)) if _id > expected else [expected]
            return self.broken(expected, _missing_text(missing), missing)
        if doc.get("seq") != expected:
            return self.broken(expected, "entry content was changed")
        legacy = doc.get("v") is None
        if legacy:
            if self.count > self.legacy or self.chain.legacy_hash is None:
                return self.broken(expected, "an unkeyed entry where a keyed one belongs")
            link, value, own = doc.get("prev_hash"), doc.get("hash"), self.chain.legacy_hash(doc)
        elif doc.get("v") == VERSION:
            link, value, own = doc.get("prev"), doc.get("mac"), self.chain.entry_mac(doc)
        else:
            return self.broken(expected, f"unknown entry version {doc.get('v')!r}")
        if link != self.prev:
            return self.broken(expected, "link to previous entry broken")
        if not isinstance(value, str) or not hmac.compare_digest(own.encode(), value.encode()):
            return self.broken(expected, "entry content was changed")
        self.count, self.prev = expected, value
        self.legacy += legacy
        return None

    def broken(
        self, seq: int | None, problem: str, missing: list[int] | None = None
    ) -> ChainReport:
        return ChainReport(
            self.chain.name,
            self.count,
            False,
            self.legacy,
            self.unchained,
            first_broken_seq=seq,
            problem=problem,
            missing=missing or [],
        )

    def done(self, checkpoint: Anchor | None) -> ChainReport:
        return ChainReport(
            self.chain.name,
            self.count,
            True,
            self.legacy,
            self.unchained,
            sealed=None if checkpoint is None else checkpoint.count,
            head={"count": self.count, "last_mac": self.prev},
        )

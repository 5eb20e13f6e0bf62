"""The audit chain on the real server: several writers, and tampering by someone who can
write the database but does not hold `LINTAS_AUDIT_KEY`.

Appends find the end of the chain by `_id` from a hint (FerretDB v1 would read the whole
trail to sort it), so the hint going stale must never fork or break the chain. The
signed checkpoint of the head lives in another database (here: its own collection).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from lintas_intake.adapters.audit_trail import AuditTrail, legacy_entry_hash
from lintas_intake.domain.organisation import Organisation, OrganisationKind
from lintas_shared.audit_chain import GENESIS, Anchor, AuditChain
from lintas_shared.mongo import Document
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

pytestmark = pytest.mark.integration

ADMIN = Organisation(id="org-admin", name="Admin", kind=OrganisationKind.ADMIN, country="ID")
KEY = "test-audit-key-not-in-any-database"


@dataclass
class Store:
    entries: AsyncCollection[Document]
    checkpoints: AsyncCollection[Document]

    def trail(self, key: str = KEY) -> AuditTrail:
        """A trail as one process opens it (its own hint of where the chain ends)."""
        return AuditTrail(self.entries, self.checkpoints, key)


@pytest.fixture
async def store(mongo: AsyncMongoClient[Document], database_name: str) -> AsyncIterator[Store]:
    checkpoints = f"{database_name}_ckpt"
    yield Store(mongo[database_name]["audit"], mongo[checkpoints]["audit_checkpoints"])
    await mongo.drop_database(checkpoints)


async def _record(trail: AuditTrail, n: int) -> None:
    await trail.record(ADMIN, f"case-{n}", "read", ["worker.name"], None)


async def test_two_writers_and_a_restart_keep_one_unbroken_chain(store: Store) -> None:
    first, second = store.trail(), store.trail()
    await first.record(ADMIN, "case-1", "read", ["worker.name"], None)
    await second.record(ADMIN, "case-1", "read", ["worker.name"], None)  # first's hint is stale
    await asyncio.gather(*(_record(t, n) for n, t in enumerate([first, second] * 5)))
    restarted = store.trail()  # a new process: only the stored checkpoint as a hint
    await restarted.record(ADMIN, "case-restart", "erase", ["worker.name"], "worker asked")

    report = await restarted.verify()
    assert report.intact, report
    assert (report.entries, report.sealed) == (13, 13)
    assert [e["seq"] for e in await restarted.for_case("case-restart")] == [13]


async def test_a_cut_trail_stays_cut_for_verify_to_report(store: Store) -> None:
    trail = store.trail()
    for n in range(3):
        await _record(trail, n)
    await store.entries.delete_one({"_id": 3})  # tampering: the last entry removed

    await store.trail().record(ADMIN, "case-x", "read", ["worker.name"], None)

    assert [e["seq"] async for e in store.entries.find({}).sort("_id", 1)] == [1, 2, 4]
    report = await trail.verify()
    assert not report.intact
    assert (report.first_broken_seq, report.problem) == (3, "entry 3 is missing")


async def test_deleting_the_newest_entries_is_reported_naming_them(store: Store) -> None:
    trail = store.trail()
    for n in range(5):
        await _record(trail, n)
    await store.entries.delete_many({"_id": {"$in": [4, 5]}})  # the tail: no gap is left

    report = await store.trail().verify()
    assert not report.intact
    assert report.missing == [4, 5]
    assert report.first_broken_seq == 4
    assert "entries 4 to 5 are missing" in (report.problem or "")


async def test_a_rewritten_and_rechained_trail_is_reported(store: Store) -> None:
    trail = store.trail()
    for n in range(4):
        await _record(trail, n)
    # Whoever can write the database edits entry 2 and recomputes every link after it,
    # as the old unkeyed scheme allowed, here with a MAC key of their own (not ours).
    forger = AuditChain("intake", store.entries, store.checkpoints, "a-guessed-key")
    prev = (await store.entries.find_one({"_id": 1}) or {})["mac"]
    for seq in (2, 3, 4):
        doc = dict(await store.entries.find_one({"_id": seq}) or {})
        if seq == 2:
            doc["reason"] = "nothing to see"
        doc["prev"] = prev
        doc["mac"] = prev = forger.entry_mac(doc)
        await store.entries.replace_one({"_id": seq}, doc)

    report = await store.trail().verify()
    assert not report.intact
    assert (report.first_broken_seq, report.problem) == (2, "entry content was changed")


async def test_a_forged_checkpoint_is_refused(store: Store) -> None:
    trail = store.trail()
    for n in range(4):
        await _record(trail, n)
    await store.entries.delete_many({"_id": {"$in": [3, 4]}})
    # ...and the checkpoint moved back to match, signed with a key that is not ours.
    last = await store.entries.find_one({"_id": 2})
    assert last is not None
    forger = AuditChain("intake", store.entries, store.checkpoints, "a-guessed-key")
    await store.checkpoints.replace_one(
        {"_id": "intake"},
        {
            "count": 2,
            "last_mac": last["mac"],
            "signature": forger.checkpoint_signature(2, last["mac"]),
        },
    )

    report = await store.trail().verify()
    assert not report.intact
    assert "signature does not hold" in (report.problem or "")
    # Without the checkpoint at all, keyed entries are not taken as a whole chain either.
    await store.checkpoints.delete_one({"_id": "intake"})
    report = await store.trail().verify()
    assert (report.intact, report.problem) == (
        False,
        "keyed entries but no checkpoint (it was deleted)",
    )


async def test_a_rollback_to_an_old_checkpoint_is_caught_only_by_a_witness(store: Store) -> None:
    trail = store.trail()
    for n in range(2):
        await _record(trail, n)
    old = await store.checkpoints.find_one({"_id": "intake"})  # genuinely signed, count 2
    for n in range(2, 4):
        await _record(trail, n)
    seen = (await trail.verify()).head  # what an operator's earlier check witnessed
    assert old is not None
    assert seen is not None
    assert seen["count"] == 4
    await store.entries.delete_many({"_id": {"$in": [3, 4]}})
    await store.checkpoints.replace_one({"_id": "intake"}, old)

    assert (await store.trail().verify()).intact  # the documented limit of the checkpoint
    witness = Anchor(seen["count"], seen["last_mac"], "witness file")
    report = await store.trail().verify([witness])
    assert not report.intact
    assert report.missing == [3, 4]
    assert "the witness file counts 4" in (report.problem or "")


async def test_legacy_unkeyed_entries_are_counted_apart_and_anchored_by_the_keyed_ones(
    store: Store,
) -> None:
    # Two entries as the unkeyed scheme wrote them (the first before persons existed).
    prev = GENESIS
    for seq, person in ((1, None), (2, "person-a")):
        entry: dict[str, Any] = {
            "seq": seq,
            "at": "2026-01-01T00:00:00+00:00",
            "organisation_id": "org-admin",
            "organisation_kind": "admin",
            "case_id": "case-1",
            "action": "read",
            "fields": ["worker.name"],
            "reason": None,
            "prev_hash": prev,
        }
        if person:
            entry["person_id"] = person
        entry["hash"] = prev = legacy_entry_hash(entry)
        await store.entries.insert_one({"_id": seq, **entry})
    trail = store.trail()
    await trail.record(ADMIN, "case-1", "read", ["worker.name"], None, person_id="person-b")
    report = await trail.verify()
    assert (report.intact, report.entries, report.legacy_entries) == (True, 3, 2)
    assert [e.get("person_id") for e in await trail.for_case("case-1")] == [
        None,
        "person-a",
        "person-b",
    ]

    # Rewriting a legacy entry and recomputing its unkeyed hashes breaks the keyed link.
    doc = dict(await store.entries.find_one({"_id": 2}) or {})
    doc["person_id"] = "person-z"
    doc["hash"] = legacy_entry_hash(doc)
    await store.entries.replace_one({"_id": 2}, doc)
    report = await trail.verify()
    assert (report.first_broken_seq, report.problem) == (3, "link to previous entry broken")

"""The audit chain on the real server when more than one writer appends.

Appends find the end of the chain by `_id` from a hint (FerretDB v1 would read the whole
trail to sort it), so the hint going stale must never fork or break the chain.
"""

from __future__ import annotations

import asyncio

import pytest
from lintas_intake.adapters.audit_trail import AuditTrail
from lintas_intake.domain.organisation import Organisation, OrganisationKind
from lintas_shared.mongo import Document
from pymongo import AsyncMongoClient

pytestmark = pytest.mark.integration

ADMIN = Organisation(id="org-admin", name="Admin", kind=OrganisationKind.ADMIN, country="ID")


async def test_two_writers_and_a_restart_keep_one_unbroken_chain(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    collection = mongo[database_name]["audit"]
    first, second = AuditTrail(collection), AuditTrail(collection)
    await first.record(ADMIN, "case-1", "read", ["worker.name"], None)
    await second.record(ADMIN, "case-1", "read", ["worker.name"], None)  # first's hint is stale
    await asyncio.gather(
        *(
            t.record(ADMIN, f"case-{n}", "read", ["worker.name"], None)
            for n, t in enumerate([first, second] * 5)
        )
    )
    restarted = AuditTrail(collection)  # a new process: only the stored head as a hint
    await restarted.record(ADMIN, "case-restart", "erase", ["worker.name"], "worker asked")

    report = await restarted.verify()
    assert report.intact, report
    assert report.entries == 13
    assert [e["seq"] for e in await restarted.for_case("case-restart")] == [13]


async def test_a_cut_trail_stays_cut_for_verify_to_report(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    collection = mongo[database_name]["audit"]
    trail = AuditTrail(collection)
    for n in range(3):
        await trail.record(ADMIN, f"case-{n}", "read", ["worker.name"], None)
    await collection.delete_one({"_id": 3})  # tampering: the last entry removed

    await AuditTrail(collection).record(ADMIN, "case-x", "read", ["worker.name"], None)

    assert [e["seq"] async for e in collection.find({}).sort("_id", 1)] == [1, 2, 4]
    report = await trail.verify()
    assert not report.intact
    assert (report.first_broken_seq, report.problem) == (3, "an entry is missing")


async def test_the_person_is_covered_by_the_hash_and_older_entries_still_verify(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    collection = mongo[database_name]["audit"]
    trail = AuditTrail(collection)
    await trail.record(ADMIN, "case-1", "read", ["worker.name"], None)  # an API key
    # As written before persons existed: no person_id field at all.
    await collection.update_one({"_id": 1}, {"$unset": {"person_id": ""}})
    await trail.record(ADMIN, "case-1", "read", ["worker.name"], None, person_id="person-a")
    assert (await trail.verify()).intact
    assert [e.get("person_id") for e in await trail.for_case("case-1")] == [None, "person-a"]

    await collection.update_one({"_id": 2}, {"$set": {"person_id": "person-b"}})
    report = await trail.verify()
    assert (report.first_broken_seq, report.problem) == (2, "entry content was changed")

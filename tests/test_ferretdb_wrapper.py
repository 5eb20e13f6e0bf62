"""The project's FerretDB wrapper (deploy/ferretdb): `_id` lookups use an index, also
when the filter has more fields, and each single-document write is atomic, as on MongoDB.

FerretDB v1.24 queries `_id` with `_ferretdb_sjson->'$._id'` but indexes
`_ferretdb_sjson->"_id"`, which SQLite does not treat as the same expression, so without
the wrapper's extra index every lookup by `_id` reads the whole table. This test starts
the wrapper on its own port and data directory, lets the services' kind of traffic
create a collection, and asks SQLite itself how it would run FerretDB's `_id` query.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from bson import Binary, ObjectId, Regex, Timestamp
from lintas_deploy.ferretdb import provision_ferretdb, run_added_go_tests, start_ferretdb
from lintas_deploy.processes import wait_for_port
from pymongo import AsyncMongoClient, MongoClient, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from tests.support.servers import REPO_ROOT

pytestmark = pytest.mark.integration

#: The statement FerretDB's SQLite backend runs for a filter on `_id` alone.
FERRETDB_ID_QUERY = "SELECT _ferretdb_sjson FROM {table} WHERE _ferretdb_sjson->'$._id' = ?"


def _plan(database: Path, table: str) -> str:
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "EXPLAIN QUERY PLAN " + FERRETDB_ID_QUERY.format(table=f'"{table}"'), ('"c1"',)
        ).fetchall()
    return " ".join(str(row[-1]) for row in rows)


def _cache_dir() -> Path:
    """Where the build's binary and sources are (`LINTAS_CACHE_DIR`, else the checkout's)."""
    return Path(os.environ.get("LINTAS_CACHE_DIR", REPO_ROOT / ".lintas" / "cache"))


@pytest.fixture(scope="module")
def wrapper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The wrapper on its own port and data directory: (its URI, the SQLite directory)."""
    state = tmp_path_factory.mktemp("ferretdb-wrapper")
    port = int(os.environ.get("LINTAS_TEST_FERRETDB_WRAPPER_PORT", "27019"))
    cache = _cache_dir()
    # Every command of a millisecond or more is logged (see the slow-command test).
    process = start_ferretdb(state, cache, port=port, progress=lambda _line: None, slow_ms=1)
    try:
        yield f"mongodb://127.0.0.1:{port}/", state / "ferretdb" / "data"
    finally:
        process.stop()


def test_lookups_by_id_use_an_index_in_every_collection(wrapper: tuple[str, Path]) -> None:
    uri, data = wrapper
    with MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        client["wrapper_check"]["cases"].insert_many([{"_id": f"c{n}"} for n in range(100)])
        assert client["wrapper_check"]["cases"].find_one({"_id": "c99"}) == {"_id": "c99"}
    database = data / "wrapper_check.sqlite"
    with sqlite3.connect(database) as db:
        [table] = [
            name
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not name.startswith("_ferretdb")
        ]
    plan = _plan(database, table)
    for _ in range(100):  # the wrapper indexes new tables every half second
        if "USING INDEX" in plan:
            break
        time.sleep(0.1)
        plan = _plan(database, table)
    assert f"USING INDEX {table}_lintas_id" in plan


async def test_concurrent_writes_to_one_document_from_two_clients_are_all_kept(
    wrapper: tuple[str, Path],
) -> None:
    # FerretDB v1 on its own lost most of these (an update is its read then its write).
    uri, _ = wrapper
    first, second = AsyncMongoClient(uri), AsyncMongoClient(uri)
    try:
        counter = first["wrapper_check"]["counter"]
        await counter.insert_one({"_id": "c", "n": 0, "seen": []})

        async def bump(client: AsyncMongoClient[dict[str, object]], worker: int) -> None:
            for n in range(100):
                await client["wrapper_check"]["counter"].update_one(
                    {"_id": "c"}, {"$inc": {"n": 1}, "$push": {"seen": f"{worker}-{n}"}}
                )

        await asyncio.gather(*(bump(first if w % 2 else second, w) for w in range(6)))

        doc = await counter.find_one({"_id": "c"})
        assert doc is not None
        assert doc["n"] == 600
        assert len(set(doc["seen"])) == 600
    finally:
        await first.close()
        await second.close()


def test_one_update_command_of_many_statements_answers_and_leaves_the_database_usable(
    wrapper: tuple[str, Path],
) -> None:
    # Unpatched FerretDB v1 kept each statement's read (one of the database's 100 SQLite
    # connections) open until the command ended: 150 statements waited forever.
    uri, _ = wrapper
    with MongoClient(uri, serverSelectionTimeoutMS=10_000, socketTimeoutMS=60_000) as client:
        collection = client["wrapper_check"]["many_statements"]
        collection.insert_many([{"_id": f"m{n}", "outbox": [n]} for n in range(150)])
        result = collection.bulk_write(
            [
                UpdateOne({"_id": f"m{n}", "outbox": [n]}, {"$set": {"outbox": []}})
                for n in range(150)
            ],
            ordered=False,
        )
        assert result.matched_count == 150
        assert collection.count_documents({"outbox": []}) == 150
        assert client["wrapper_check"].list_collection_names()


#: A WAL frame: one page of SQLite's default 4 KiB, and the frame's header.
WAL_FRAME_BYTES = 4096 + 24


@pytest.mark.parametrize("how", ["update_one", "find_one_and_update"])
def test_changes_of_one_document_let_the_wal_start_over(
    wrapper: tuple[str, Path], how: str
) -> None:
    # Unpatched, a change of one document kept its read open over its write: SQLite's
    # checkpoint after each commit could never finish, so the WAL grew with every write
    # (about 12,000 frames, 50 MB, here) and each commit checkpointed again. SQLite
    # checkpoints at 1,000 frames; once it finishes, the next write starts the WAL over,
    # so its file stays near that size, whatever the number of writes.
    uri, data = wrapper
    database = f"wal_{how}"
    with MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        collection = client[database]["changes"]
        collection.create_index("case_id")
        collection.insert_many(
            [{"_id": f"w{n}", "case_id": f"c{n}", "v": 0, "text": "x" * 2000} for n in range(300)]
        )
        for n in range(3000):
            change = {"_id": f"w{n % 300}", "v": n // 300}, {"$inc": {"v": 1}}
            if how == "update_one":
                assert collection.update_one(*change).modified_count == 1
            else:
                assert collection.find_one_and_update(*change) is not None
        assert collection.count_documents({"v": 10}) == 300
    wal = data / f"{database}.sqlite-wal"
    assert wal.stat().st_size < 2000 * WAL_FRAME_BYTES


def test_changes_of_one_document_answer_as_mongodb_does(wrapper: tuple[str, Path]) -> None:
    # The paths that now read their document before writing it: a sort picks which one,
    # the answer is the document before or after, a remove returns what it removed, an
    # upsert that matches nothing inserts, a filter that matches nothing changes nothing.
    uri, _ = wrapper
    with MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        collection = client["wrapper_check"]["one_document"]
        collection.insert_many([{"_id": f"d{n}", "group": "g", "rank": n} for n in range(5)])
        before = collection.find_one_and_update(
            {"group": "g"}, {"$set": {"picked": True}}, sort=[("rank", -1)]
        )
        assert before == {"_id": "d4", "group": "g", "rank": 4}
        after = collection.find_one_and_update(
            {"group": "g", "picked": {"$exists": False}},
            {"$inc": {"rank": 10}},
            sort=[("rank", 1)],
            return_document=ReturnDocument.AFTER,
        )
        assert after == {"_id": "d0", "group": "g", "rank": 10}
        removed = collection.find_one_and_delete({"group": "g"}, sort=[("rank", -1)])
        assert removed == {"_id": "d0", "group": "g", "rank": 10}
        assert collection.find_one({"_id": "d0"}) is None
        assert collection.find_one_and_update({"_id": "none"}, {"$set": {"x": 1}}) is None
        upserted = collection.find_one_and_update(
            {"_id": "new"}, {"$set": {"x": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        assert upserted == {"_id": "new", "x": 1}
        result = collection.update_one({"_id": "d1", "rank": 99}, {"$set": {"x": 2}})
        assert (result.matched_count, result.modified_count) == (0, 0)
        result = collection.update_one({"_id": "other"}, {"$set": {"x": 3}}, upsert=True)
        assert (result.matched_count, result.upserted_id) == (0, "other")
        assert collection.count_documents({}) == 6


def test_an_insert_never_waits_for_the_lock_of_a_long_change_of_its_collection(
    wrapper: tuple[str, Path],
) -> None:
    # Inserts change no stored document, so the proxy lets them run beside the one
    # command at a time that may (here, a relay-sized removal of 3,000 outboxes). SQLite
    # still takes one write at a time, and its busy handler sleeps while the removal's
    # statements follow one another, so the insert may be answered only near the
    # removal's end: what is checked is the proxy's own wait, from its slow-command log
    # (the fixture logs every command over 1 ms, with `lock_wait_ms`).
    uri, data = wrapper
    log = data.parent.parent / "logs" / "ferretdb.log"
    with MongoClient(uri, serverSelectionTimeoutMS=10_000, socketTimeoutMS=120_000) as client:
        collection = client["wrapper_check"]["beside_a_change"]
        collection.insert_many([{"_id": f"b{n}", "outbox": [n]} for n in range(3000)])
        emptying = [
            UpdateOne({"_id": f"b{n}", "outbox": [n]}, {"$set": {"outbox": []}})
            for n in range(3000)
        ]
        with ThreadPoolExecutor(1) as pool:
            removal = pool.submit(collection.bulk_write, emptying, ordered=False)
            for _ in range(10_000):  # until the command is under way
                if collection.find_one({"outbox": []}, {"_id": 1}) is not None:
                    break
            collection.insert_one({"_id": "new"})
            assert removal.result().matched_count == 3000
        assert collection.count_documents({"outbox": []}) == 3000
        assert collection.count_documents({}) == 3001
    lines = [
        line
        for line in log.read_text().splitlines()
        if 'msg="slow command"' in line and "collection=beside_a_change" in line
    ]
    removal_ms = [_field(line, "ms") for line in lines if "command=update" in line]
    inserts = [line for line in lines if "command=insert" in line]
    assert removal_ms, lines[-5:]
    # The last insert logged is the one made during the removal, if it took over 1 ms;
    # under 1 ms it cannot have waited for a removal that took longer.
    if len(inserts) > 1:
        assert _field(inserts[-1], "lock_wait_ms") < max(removal_ms) / 2, inserts[-1]


def _field(line: str, name: str) -> int:
    """An integer field of a log line (`name=123`)."""
    return int(line.split(f" {name}=", 1)[1].split()[0])


def test_a_slow_command_is_logged_by_name_and_collection_never_by_its_values(
    wrapper: tuple[str, Path],
) -> None:
    uri, data = wrapper
    log = data.parent.parent / "logs" / "ferretdb.log"
    secret = "+852-5555-0123"
    with MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        collection = client["wrapper_slow"]["phones"]
        collection.insert_many([{"_id": n, "phone": secret} for n in range(2000)])
        # 2,000 documents changed in one command: far beyond the fixture's 1 ms.
        collection.update_many({"phone": secret}, {"$set": {"phone": secret + "9"}})
    lines = [line for line in log.read_text().splitlines() if 'msg="slow command"' in line]
    update = [line for line in lines if "db=wrapper_slow" in line and "command=update" in line]
    assert update, lines[-5:]
    assert "collection=phones" in update[0]
    assert "lock_wait_ms=" in update[0]
    assert not any(secret in line for line in lines)


async def test_an_upsert_racing_inserts_of_its_id_is_applied_never_refused(
    wrapper: tuple[str, Path],
) -> None:
    # MongoDB applies an upsert that loses the insert race to the winning document; with
    # inserts running beside other writes, the proxy keeps upserts from racing them.
    uri, _ = wrapper
    clients = [AsyncMongoClient[dict[str, object]](uri) for _ in range(4)]
    races = clients[0]["wrapper_check"]["upsert_race"]

    async def insert(client: AsyncMongoClient[dict[str, object]], doc_id: str) -> bool:
        try:
            await client["wrapper_check"]["upsert_race"].insert_one(
                {"_id": doc_id, "inserted": True}
            )
        except DuplicateKeyError:
            return False  # as on MongoDB: the document was there first
        return True

    async def upsert(client: AsyncMongoClient[dict[str, object]], doc_id: str) -> bool:
        await client["wrapper_check"]["upsert_race"].update_one(
            {"_id": doc_id}, {"$inc": {"n": 1}}, upsert=True
        )
        return False

    try:
        for race in range(40):
            doc_id = f"u{race}"
            inserted = await asyncio.gather(
                insert(clients[0], doc_id),
                upsert(clients[1], doc_id),
                insert(clients[2], doc_id),
                upsert(clients[3], doc_id),
            )
            doc = await races.find_one({"_id": doc_id})
            assert doc is not None
            assert doc["n"] == 2
            assert doc.get("inserted", False) is any(inserted)
    finally:
        for client in clients:
            await client.close()


def test_a_filter_on_id_and_more_fields_is_found_by_id(wrapper: tuple[str, Path]) -> None:
    # Unpatched FerretDB v1 reads the whole table for `{_id: x, version: 3}` (it pushes
    # `_id` down only when it is the filter's only field); PATCHES lift that.
    uri, _ = wrapper
    with MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        collection = client["wrapper_check"]["versions"]
        collection.insert_many([{"_id": f"v{n}", "version": n} for n in range(10)])
        client["wrapper_check"]["numbered"].insert_many([{"_id": n} for n in range(10)])
        for query, expected in (({"_id": "v3", "version": 3}, True), ({"version": 3}, False)):
            plan = client["wrapper_check"].command(
                "explain", {"find": "versions", "filter": query}, verbosity="queryPlanner"
            )
            assert plan["filterPushdown"] is expected, (query, plan)
        # Integer ids too (intake's audit chain): found by the index, and matched exactly.
        plan = client["wrapper_check"].command(
            "explain", {"find": "numbered", "filter": {"_id": 7}}, verbosity="queryPlanner"
        )
        assert plan["filterPushdown"] is True, plan
        numbered = client["wrapper_check"]["numbered"]
        assert numbered.find_one({"_id": 7}) == {"_id": 7}
        assert numbered.find_one({"_id": 7.0}) == {"_id": 7}
        assert numbered.find_one({"_id": 70}) is None
        assert numbered.find_one({"_id": "7"}) is None
        assert collection.find_one({"_id": "v3", "version": 3}) == {"_id": "v3", "version": 3}
        assert collection.find_one({"_id": "v3", "version": 4}) is None


#: Documents whose `status` takes every shape a filter on it must tell apart.
SHAPES = [
    {"_id": 1, "status": "open"},
    {"_id": 2, "status": ["closed", "open"]},  # MongoDB matches an array containing it
    {"_id": 3},  # missing
    {"_id": 4, "status": None},
    {"_id": 5, "status": "closed"},
    {"_id": 6, "status": {"open": "open"}},  # a document is not equal to a string
    {"_id": 7, "status": 'op"en<&>\\é'},  # JSON escapes in the stored text
    {"_id": 8, "status": 1},
]


def _plan_of(client: MongoClient[dict[str, object]], query: dict[str, object]) -> str:
    plan = client["wrapper_check"].command(
        "explain", {"find": "shapes", "filter": query}, verbosity="queryPlanner"
    )
    return f"pushdown={plan['filterPushdown']} " + " ".join(plan["queryPlanner"]["Plan"])


def test_a_filter_on_an_indexed_field_reads_that_index(wrapper: tuple[str, Path]) -> None:
    # Unpatched FerretDB v1 reads and decodes the whole table for any filter that is not
    # on `_id` alone (0.5 finds/s at 50,000 documents); PATCHES narrow it with the index.
    uri, _ = wrapper
    with MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        shapes = client["wrapper_check"]["shapes"]
        shapes.insert_many(SHAPES)
        shapes.create_index("status")
        shapes.create_index([("org", 1), ("at", 1)])

        for query in (
            {"status": "open"},
            {"status": {"$eq": "open"}},
            {"status": {"$in": ["open", "closed"]}},
            {"org": "o1", "at": {"$gt": 3}},  # leads a compound index
            {"org": "o1", "at": {"$in": ["a", "b"]}},  # both fields of a compound index
            {"status": 1},  # by the field's value (a single-field index has a twin)
        ):
            plan = _plan_of(client, query)
            assert plan.startswith("pushdown=True"), (query, plan)
            assert "USING INDEX" in plan, (query, plan)
            assert "detail=SCAN" not in plan, (query, plan)
        for query in (
            {"unindexed": "open"},
            {"org": 1},  # a number on a compound index: no value twin to search
            {"status": None},  # would have to find the missing field too
            {"status.inner": "open"},  # a path may run through an array of documents
            {"status": {"$regex": "^op"}},
        ):
            plan = _plan_of(client, query)
            assert plan.startswith("pushdown=False"), (query, plan)
            assert "detail=SCAN" in plan, (query, plan)


def test_narrowed_filters_find_exactly_what_mongodb_finds(wrapper: tuple[str, Path]) -> None:
    uri, _ = wrapper
    with MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        shapes = client["wrapper_check"]["shapes_found"]
        shapes.insert_many(SHAPES)
        shapes.create_index("status")

        def ids(query: dict[str, object]) -> set[object]:
            return {doc["_id"] for doc in shapes.find(query, {"_id": 1})}

        assert ids({"status": "open"}) == {1, 2}
        assert ids({"status": {"$eq": "closed"}}) == {2, 5}
        assert ids({"status": {"$in": ["closed", "nobody"]}}) == {2, 5}
        assert ids({"status": 'op"en<&>\\é'}) == {7}
        assert ids({"status": "open", "_id": {"$gt": 1}}) == {2}
        assert ids({"status": "nobody"}) == set()
        assert ids({"status": 1}) == {8}
        assert ids({"status": {"$gte": 1}}) == {8}
        # Writes narrowed by the same index change exactly the matching documents.
        assert shapes.update_many({"status": "open"}, {"$set": {"seen": True}}).modified_count == 2
        assert ids({"seen": True}) == {1, 2}
        assert shapes.delete_many({"status": "closed"}).deleted_count == 2
        assert ids({}) == {1, 3, 4, 6, 7, 8}


#: Documents whose `org` and `ref` (one compound index) take the shapes a filter on both
#: must tell apart: MongoDB matches an array holding the value in either field.
PAIRS = [
    {"_id": 1, "org": "o1", "ref": "r1"},
    {"_id": 2, "org": "o1", "ref": "r2"},
    {"_id": 3, "org": "o2", "ref": "r1"},
    {"_id": 4, "org": ["o2", "o1"], "ref": "r1"},
    {"_id": 5, "org": "o1", "ref": ["r9", "r1"]},
    {"_id": 6, "org": "o1"},  # no ref
    {"_id": 7, "ref": "r1"},  # no org
    {"_id": 8, "org": "o1", "ref": None},
    {"_id": 9, "org": ["o3"], "ref": "r1"},
]


def test_a_filter_on_both_fields_of_a_compound_index_finds_exactly_what_mongodb_finds(
    wrapper: tuple[str, Path],
) -> None:
    # "This organisation's case with one of these refs": narrowed by the organisation
    # alone, it read every case of a one-NGO import (stalls of minutes at 70,000 cases).
    uri, _ = wrapper
    with MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        pairs = client["wrapper_check"]["pairs"]
        pairs.insert_many(PAIRS)
        pairs.create_index([("org", 1), ("ref", 1)])

        def ids(query: dict[str, object]) -> set[object]:
            return {doc["_id"] for doc in pairs.find(query, {"_id": 1})}

        plan = " ".join(
            client["wrapper_check"].command(
                "explain",
                {"find": "pairs", "filter": {"org": "o1", "ref": {"$in": ["r1", "r2"]}}},
                verbosity="queryPlanner",
            )["queryPlanner"]["Plan"]
        )
        assert "MULTI-INDEX OR" in plan, plan
        assert "detail=SCAN" not in plan, plan
        # Three searches of the compound index, the first by both fields.
        assert plan.count("_org_1_ref_1 (") == 3, plan
        assert "_org_1_ref_1 (<expr>=? AND <expr>=?)" in plan, plan
        assert ids({"org": "o1", "ref": "r1"}) == {1, 4, 5}
        assert ids({"org": "o1", "ref": {"$in": ["r1", "r2"]}}) == {1, 2, 4, 5}
        assert ids({"org": {"$eq": "o2"}, "ref": "r1"}) == {3, 4}
        assert ids({"org": "o3", "ref": "r1"}) == {9}
        assert ids({"org": "o1", "ref": "nobody"}) == set()
        assert ids({"ref": "r1", "org": "o1", "_id": {"$gt": 1}}) == {4, 5}


def _date(year: int) -> datetime:
    return datetime(year, 1, 1, tzinfo=UTC)


#: Documents whose `due` takes every shape a range on it must tell apart; 1990 has fewer
#: digits of milliseconds than 2026 and 2300 more, which a text comparison would misplace.
DUES = [
    {"_id": 1, "due": _date(2026)},
    {"_id": 2, "due": _date(1990)},
    {"_id": 3, "due": _date(2300)},
    {"_id": 4, "due": [_date(1980), _date(2030)]},
    {"_id": 5},
    {"_id": 6, "due": None},
    {"_id": 7, "due": "2026"},
    {"_id": 8, "due": 5},
    {"_id": 9, "due": 1.5e12},
    {"_id": 10, "due": True},
]


def test_ranges_on_dates_and_numbers_are_narrowed_and_exact(wrapper: tuple[str, Path]) -> None:
    # "Timers due before now" must not read the whole collection, and a range must find
    # exactly what MongoDB finds: by value (not text), arrays by any element, no strings.
    uri, data = wrapper
    with MongoClient(uri, serverSelectionTimeoutMS=10_000, tz_aware=True) as client:
        dues = client["wrapper_check"]["dues"]
        dues.insert_many(DUES)
        dues.create_index("due")

        def ids(query: dict[str, object]) -> set[object]:
            return {doc["_id"] for doc in dues.find(query, {"_id": 1})}

        cases: list[tuple[dict[str, object], set[object]]] = [
            ({"due": {"$lte": _date(2027)}}, {1, 2, 4}),
            ({"due": {"$lt": _date(1990)}}, {4}),
            ({"due": {"$gt": _date(2027)}}, {3, 4}),
            ({"due": {"$gte": _date(1985), "$lt": _date(2028)}}, {1, 2, 4}),
            ({"due": _date(2026)}, {1}),
            ({"due": {"$gt": 1}}, {8, 9}),
            ({"due": 5}, {8}),
            ({"due": {"$eq": 1.5e12}}, {9}),
        ]
        for query, expected in cases:
            assert ids(query) == expected, query
            plan = client["wrapper_check"].command(
                "explain", {"find": "dues", "filter": query}, verbosity="queryPlanner"
            )
            steps = " ".join(plan["queryPlanner"]["Plan"])
            assert plan["filterPushdown"] is True, (query, steps)
            assert "_due_1_lintas_value" in steps, (query, steps)
            assert "detail=SCAN" not in steps, (query, steps)

        # The twin is partial: text, arrays and missing fields cost its writes nothing.
        with sqlite3.connect(data / "wrapper_check.sqlite") as db:
            [(table, twin)] = db.execute(
                "SELECT tbl_name, sql FROM sqlite_master WHERE name LIKE '%_due_1_lintas_value'"
            ).fetchall()
            held = db.execute(
                f"SELECT _ferretdb_sjson->>'$._id' FROM \"{table}\" "  # noqa: S608 (SQLite's name)
                "WHERE _ferretdb_sjson->>'$.due' < ''"
            ).fetchall()
        assert twin.endswith("WHERE _ferretdb_sjson->>'$.due' < ''"), twin
        assert sorted(i for (i,) in held) == [1, 2, 3, 8, 9, 10]  # dates, numbers, true

        # The value index lives and dies with its index.
        dues.drop_index("due_1")
        with sqlite3.connect(data / "wrapper_check.sqlite") as db:
            names = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='index'")]
        assert not [name for name in names if "_due_1" in name], names
        assert ids({"due": {"$lte": _date(2027)}}) == {1, 2, 4}  # still right, by a scan


def test_the_collector_runs_at_the_pace_deploy_sets(wrapper: tuple[str, Path]) -> None:
    # GOGC 400 and a 1 GiB soft limit (main.go's tuneMemory), as read back from Go's
    # runtime, not as asked: Go's own defaults would read 100 and no limit.
    _, data = wrapper
    log = (data.parent.parent / "logs" / "ferretdb.log").read_text()
    [line] = [x for x in log.splitlines() if 'msg="go memory settings in effect"' in x]
    assert "gogc_percent=400 " in line + " "
    assert f"memory_limit_bytes={1024 << 20}" in line


def test_each_sql_statement_is_logged_at_debug_level_and_not_built_at_info(
    wrapper: tuple[str, Path], tmp_path: Path
) -> None:
    # The build only builds the statement lines when debug is on (a patch of FerretDB's
    # fsql, for CPU); debug must still show every statement with its arguments.
    _, data = wrapper
    info_log = (data.parent.parent / "logs" / "ferretdb.log").read_text()
    assert ">>> " not in info_log
    cache = _cache_dir()
    binary = provision_ferretdb(cache, progress=lambda _line: None)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "data").mkdir()
    log = tmp_path / "debug.log"
    argv = [str(binary), "-listen-addr", f"127.0.0.1:{port}", "-log-level", "debug"]
    with log.open("w") as out:
        process = subprocess.Popen(
            [*argv, "-sqlite-dir", f"{tmp_path / 'data'}/"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port("127.0.0.1", port, 30.0)
        with MongoClient(f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=10_000) as c:
            c["wrapper_debug"]["notes"].insert_one({"_id": "n1", "text": "marker-7731"})
    finally:
        process.terminate()
        process.wait(timeout=30)
    statements = [line for line in log.read_text().splitlines() if ">>> INSERT" in line]
    assert statements, log.read_text()[-2000:]
    assert any("marker-7731" in line for line in statements)


def test_keys_that_differ_late_or_in_length_are_told_apart_as_sqlite_compares_them(
    wrapper: tuple[str, Path],
) -> None:
    # The build replaces the C library's memcmp (LIBC_PATCHES), on which SQLite's index
    # keys, unique checks and JSON cache rest: only its sign may count.
    uri, _ = wrapper
    base = "k" * 5000
    keys = [base + "a", base + "b", base, base + "a\u00e9", base[:-1] + "j", "a", "b" + base]
    with MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        notes = client["wrapper_memcmp"]["notes"]
        notes.create_index("key", unique=True)
        notes.insert_many([{"_id": n, "key": k, "body": k * 2} for n, k in enumerate(keys)])
        with pytest.raises(DuplicateKeyError):
            notes.insert_one({"_id": 100, "key": base + "b"})
        for n, key in enumerate(keys):
            assert [d["_id"] for d in notes.find({"key": key})] == [n]
            notes.update_one({"_id": n}, {"$set": {"seen": True}})
        assert notes.count_documents({"seen": True}) == len(keys)


def test_an_ordered_insert_stops_at_its_refused_document(wrapper: tuple[str, Path]) -> None:
    # FerretDB refuses a nested array before it writes; its handler then stores an empty
    # batch, which must succeed for an ordered insert to stop there (as MongoDB's does).
    uri, _ = wrapper
    with MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        rows = client["wrapper_ordered"]["rows"]
        with pytest.raises(BulkWriteError) as refused:
            rows.insert_many([{"_id": 1, "x": [[1]]}, {"_id": 2}], ordered=True)
        assert refused.value.details["nInserted"] == 0
        assert rows.count_documents({}) == 0
        # A batch of exactly 100 (FerretDB's batch size) is followed by an empty one.
        rows.insert_many([{"_id": n} for n in range(100, 200)], ordered=True)
        assert rows.count_documents({}) == 100


@pytest.fixture(scope="module")
def go_tests(wrapper: tuple[str, Path]) -> str:
    """The verbose output of the Go tests added to the patched modules, run once on the
    build the wrapper fixture made (`run_added_go_tests`)."""
    cache = _cache_dir()
    return run_added_go_tests(cache)


def _passed(output: str, *names: str) -> None:
    for name in names:
        assert f"--- PASS: {name}" in output, output[-3000:]


def test_stored_documents_are_encoded_and_decoded_in_one_pass_as_ferretdb_does(
    wrapper: tuple[str, Path], go_tests: str
) -> None:
    # The build encodes and decodes stored documents in one pass (deploy/ferretdb/sjson/),
    # falling back to FerretDB's own code for anything else. The Go tests added beside it
    # compare the two on random documents of every type (and the decoder on altered
    # ones); here, through the wire, every BSON type the store keeps comes back as it
    # went in.
    _passed(
        go_tests,
        "TestLintasUnmarshalDecodesWhatMarshalWritesAsBefore",
        "TestLintasUnmarshalTakesNothingFerretDBWouldDecodeOtherwise",
        "TestLintasUnmarshalRefusesWhatFerretDBRefuses",
        "TestLintasMarshalWritesWhatFerretDBWrites",
    )
    uri, _ = wrapper
    when = datetime(2026, 12, 5, 9, 30, 1, 123000, tzinfo=UTC)
    document = {
        "_id": 'quote " back \\ tab \t nul \x00 é 漢 😀 \u2028',
        "double": -2.5e-7,
        "big": 1.7976931348623157e308,
        "int": -(2**31),
        "long": 2**62,
        "true": True,
        "none": None,
        "when": when,
        "bytes": Binary(bytes(range(256)), 4),
        "oid": ObjectId("6751b2c0a1b2c3d4e5f60718"),
        "regex": Regex("^a.*z$", "im"),
        "stamp": Timestamp(1_733_390_000, 7),
        "empty": {},
        "empties": [{}, {"none": []}],  # FerretDB v1 stores no array directly in an array
        "nested": {"list": [1, "two", {"three": [3.5, None, {"four": when}]}], "": "blank"},
    }
    with MongoClient(uri, serverSelectionTimeoutMS=10_000, tz_aware=True) as client:
        things = client["wrapper_decode"]["things"]
        things.insert_one(document)
        things.update_one({"_id": document["_id"]}, {"$set": {"later": [1, 2]}})
        stored = things.find_one({"_id": document["_id"]})
    assert stored == {**document, "later": [1, 2]}
    assert list(stored) == [*document, "later"]


def test_the_drivers_kept_statements_are_used_again_and_follow_the_schema(
    wrapper: tuple[str, Path], go_tests: str
) -> None:
    # The build's SQLite driver keeps each connection's recent statements prepared
    # (deploy/ferretdb/sqlitedriver/); its Go tests, run on the patched modules, check
    # reuse, errors, schema changes, the bound and a statement still in use. Here, through
    # the wire: a collection dropped and made again, a new index, refusals, more query
    # shapes than a connection keeps.
    _passed(
        go_tests,
        "TestLintasStatementsAreKeptAndUsedAgain",
        "TestLintasAFailedStatementReportsItsErrorAndIsNotKept",
        "TestLintasKeptStatementsFollowSchemaChanges",
        "TestLintasAConnectionKeepsItsRecentStatementsOnly",
        "TestLintasAStatementInUseIsNotSharedBySameText",
    )
    uri, _ = wrapper
    with MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        notes = client["wrapper_statements"]["notes"]
        for round_ in range(3):
            notes.insert_many([{"_id": n, "round": round_, "key": f"k{n}"} for n in range(5)])
            notes.update_one({"_id": 1}, {"$set": {"seen": round_}})
            assert notes.find_one({"_id": 1}) == {
                "_id": 1,
                "round": round_,
                "key": "k1",
                "seen": round_,
            }
            with pytest.raises(DuplicateKeyError):
                notes.insert_one({"_id": 1})
            if round_ == 1:
                notes.create_index("key")
            assert [d["_id"] for d in notes.find({"key": "k3"})] == [3]
            # One shape of insert for each size: more than a connection keeps.
            for size in range(1, 41):
                notes.insert_many([{"_id": f"{round_}-{size}-{n}"} for n in range(size)])
            assert notes.count_documents({}) == 5 + sum(range(1, 41))
            notes.drop()
        assert notes.count_documents({}) == 0

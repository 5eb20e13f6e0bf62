"""The project's FerretDB wrapper (deploy/ferretdb): `_id` lookups use an index.

FerretDB v1.24 queries `_id` with `_ferretdb_sjson->'$._id'` but indexes
`_ferretdb_sjson->"_id"`, which SQLite does not treat as the same expression, so without
the wrapper's extra index every lookup by `_id` reads the whole table. This test starts
the wrapper on its own port and data directory, lets the services' kind of traffic
create a collection, and asks SQLite itself how it would run FerretDB's `_id` query.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest
from lintas_deploy.ferretdb import start_ferretdb
from pymongo import MongoClient

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


def test_lookups_by_id_use_an_index_in_every_collection(tmp_path: Path) -> None:
    port = int(os.environ.get("LINTAS_TEST_FERRETDB_WRAPPER_PORT", "27019"))
    cache = Path(os.environ.get("LINTAS_CACHE_DIR", REPO_ROOT / ".lintas" / "cache"))
    process = start_ferretdb(tmp_path, cache, port=port, progress=lambda _line: None)
    try:
        with MongoClient(f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=10_000) as c:
            c["wrapper_check"]["cases"].insert_many([{"_id": f"c{n}"} for n in range(100)])
            assert c["wrapper_check"]["cases"].find_one({"_id": "c99"}) == {"_id": "c99"}
        database = tmp_path / "ferretdb" / "data" / "wrapper_check.sqlite"
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
    finally:
        process.stop()

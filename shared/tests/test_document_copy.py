"""`copy_document`: the unit of work's copy of what it stores and remembers. Every dict
and list is new (a change to the copy never reaches the original), tuples become lists
as BSON stores them, and immutable values are shared."""

from __future__ import annotations

import copy
from collections import OrderedDict
from datetime import UTC, datetime

import pytest
from bson import SON, ObjectId
from lintas_shared.mongo import copy_document

pytestmark = pytest.mark.unit


def test_every_container_is_new_and_every_value_equal() -> None:
    at = datetime(2026, 12, 6, tzinfo=UTC)
    doc = {
        "_id": "c1",
        "n": 3,
        "ratio": 0.5,
        "flag": True,
        "none": None,
        "at": at,
        "raw": b"\x00\x01",
        "oid": ObjectId(),
        "tags": ("a", "b"),
        "outbox": [{"id": "e1", "headers": {"k": "v"}}, ["nested", ("t",)]],
        "son": SON([("b", 1), ("a", {"x": [1]})]),
        "ordered": OrderedDict(z=1),
    }
    copied = copy_document(doc)

    assert copied == {**doc, "tags": ["a", "b"], "outbox": [doc["outbox"][0], ["nested", ["t"]]]}
    assert copied["at"] is at  # immutables are shared
    assert copied["oid"] is doc["oid"]
    copied["outbox"][0]["headers"]["k"] = "changed"
    copied["outbox"][1][1].append("u")
    copied["son"]["a"]["x"].append(2)
    copied["ordered"]["y"] = 2
    assert doc["outbox"][0]["headers"] == {"k": "v"}
    assert doc["outbox"][1][1] == ("t",)
    assert doc["son"]["a"] == {"x": [1]}
    assert doc["ordered"] == {"z": 1}
    assert list(copied["son"]) == ["b", "a"]  # a mapping's order is kept


def test_it_equals_a_deep_copy_of_a_nested_document() -> None:
    doc = {"a": [{"b": [{"c": [1, 2, {"d": "e"}]}]}], "f": {"g": {"h": []}}}
    copied = copy_document(doc)
    assert copied == copy.deepcopy(doc)
    copied["a"][0]["b"][0]["c"][2]["d"] = "changed"
    assert doc["a"][0]["b"][0]["c"][2] == {"d": "e"}

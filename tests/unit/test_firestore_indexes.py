"""firestore.indexes.json covers every query the Firestore read-model store sends.

The emulator serves any query without indexes; the real service refuses one that
lacks its composite index. So the queries are built by the store itself (no
server needed), turned into the protobuf the client would send, and checked
against the index file that ``firebase deploy`` / ``gcloud firestore indexes`` use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore import AsyncQuery, Query

from projections.firestore_store import FirestoreReadModelStore

INDEX_FILE = Path(__file__).resolve().parents[2] / "firestore.indexes.json"
NOW = datetime(2025, 1, 1, tzinfo=UTC)
EQUALITY = {"EQUAL", "IN"}
RANGE = {"LESS_THAN", "LESS_THAN_OR_EQUAL", "GREATER_THAN", "GREATER_THAN_OR_EQUAL"}
ASCENDING, DESCENDING, CONTAINS = "ASCENDING", "DESCENDING", "CONTAINS"


@dataclass(frozen=True)
class Shape:
    """What a query needs from an index: its collection, filters and sort order."""

    collection: str
    equalities: frozenset[str]
    contains: str | None
    ranges: frozenset[str]
    orders: tuple[tuple[str, str], ...]

    @property
    def fields(self) -> set[str]:
        found = set(self.equalities) | {field for field, _ in self.orders} | set(self.ranges)
        if self.contains is not None:
            found.add(self.contains)
        return found

    def composite_fields(self) -> tuple[frozenset[tuple[str, str]], tuple[tuple[str, str], ...]]:
        """The unordered prefix (equalities, array-contains) and the ordered rest."""
        prefix = {(field, ASCENDING) for field in self.equalities}
        if self.contains is not None:
            prefix.add((self.contains, CONTAINS))
        return frozenset(prefix), self.orders


def shape(query: AsyncQuery) -> Shape:
    proto: Any = query._to_protobuf()
    where = proto.where
    if "composite_filter" in where:
        filters = [f.field_filter for f in where.composite_filter.filters]
    elif "field_filter" in where:
        filters = [where.field_filter]
    else:
        filters = []
    ops = [(f.field.field_path, f.op.name) for f in filters]
    contains = [field for field, op in ops if op == "ARRAY_CONTAINS"]
    assert len(contains) <= 1
    assert all(op in EQUALITY | RANGE | {"ARRAY_CONTAINS"} for _, op in ops), ops
    return Shape(
        collection=proto.from_[0].collection_id,
        equalities=frozenset(field for field, op in ops if op in EQUALITY),
        contains=contains[0] if contains else None,
        ranges=frozenset(field for field, op in ops if op in RANGE),
        orders=tuple((o.field.field_path, o.direction.name) for o in proto.order_by),
    )


def store() -> FirestoreReadModelStore:
    client = firestore.AsyncClient(
        project="offline",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )
    return FirestoreReadModelStore(client)


def queries() -> dict[str, AsyncQuery]:
    s = store()
    return {
        "validator queue": s.status_query("DONE", 50),
        "a client's tasks": s.client_query("client-1", 50),
        "due deadlines": s.due_query(NOW, 50),
        "archive": s.archive_query(NOW, 50),
        "dashboard": s.recent_query("APPROVED", NOW, 50),
        "blob in use": s.blob_query("ab" * 32).limit(2),
        "status count": s.count_query("PENDING"),
        # Leaderboards for validators and operators: no method of the port yet.
        "miners by reward": s.miners.order_by("reward_avg", direction=Query.DESCENDING).limit(20),
        "miners by success": s.miners.order_by("success_rate", direction=Query.DESCENDING).limit(
            20
        ),
    }


@pytest.fixture(scope="module")
def index_file() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(INDEX_FILE.read_text())
    return loaded


def composite_indexes(index_file: dict[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    found = []
    for index in index_file["indexes"]:
        assert index["queryScope"] == "COLLECTION"
        fields = [
            (f["fieldPath"], f.get("order") or f["arrayConfig"])
            for f in index["fields"]
            if f["fieldPath"] != "__name__"
        ]
        found.append((index["collectionGroup"], fields))
    return found


def single_field_modes(index_file: dict[str, Any], collection: str, field: str) -> set[str] | None:
    """The modes a field override keeps; None when the automatic indexes apply."""
    for override in index_file.get("fieldOverrides", []):
        if (override["collectionGroup"], override["fieldPath"]) == (collection, field):
            return {i.get("order") or i["arrayConfig"] for i in override["indexes"]}
    return None


def serves(index: list[tuple[str, str]], needed: Shape) -> bool:
    prefix, orders = needed.composite_fields()
    if len(index) != len(prefix) + len(orders):
        return False
    head, tail = index[: len(prefix)], tuple(index[len(prefix) :])
    reversed_orders = tuple(
        (field, DESCENDING if direction == ASCENDING else ASCENDING) for field, direction in orders
    )
    return frozenset(head) == prefix and tail in (orders, reversed_orders)


def covering(index_file: dict[str, Any], needed: Shape) -> str:
    """Which index serves the query ("automatic", "override" or "composite #n"); fails if none."""
    if needed.ranges:
        # One inequality, and the first sort is on it (Firestore's rule for these queries).
        assert len(needed.ranges) == 1
        assert needed.orders and needed.orders[0][0] in needed.ranges
    if len(needed.fields) == 1:
        (field,) = needed.fields
        mode = CONTAINS if needed.contains else (needed.orders or [(field, ASCENDING)])[0][1]
        modes = single_field_modes(index_file, needed.collection, field)
        if modes is None:
            return "automatic"
        assert mode in modes, f"{needed.collection}.{field} is exempt from {mode} indexing"
        return "override"
    for number, (collection, fields) in enumerate(composite_indexes(index_file)):
        if collection == needed.collection and serves(fields, needed):
            return f"composite #{number}"
    raise AssertionError(f"no index serves {needed}")


@pytest.mark.parametrize("name", list(queries()))
def test_every_query_is_served_by_an_index(index_file: dict[str, Any], name: str) -> None:
    covering(index_file, shape(queries()[name]))


def test_every_composite_index_serves_a_query(index_file: dict[str, Any]) -> None:
    used = {covering(index_file, shape(query)) for query in queries().values()}
    for number, index in enumerate(composite_indexes(index_file)):
        assert f"composite #{number}" in used, f"unused index {index}"


def test_the_queries_take_the_intended_shapes() -> None:
    # Guards the checker itself: it must see what the store actually sends.
    shapes = {name: shape(query) for name, query in queries().items()}
    assert shapes["validator queue"].orders == (
        ("priority_rank", DESCENDING),
        ("created_at", ASCENDING),
    )
    assert shapes["archive"].equalities == {"archived", "status"}
    assert shapes["archive"].ranges == {"updated_at"}
    assert shapes["blob in use"].contains == "blobs"
    assert shapes["due deadlines"].fields == {"next_deadline"}


def test_the_stored_state_and_staging_are_not_indexed(index_file: dict[str, Any]) -> None:
    # Large JSON text: indexing it costs writes and storage, and no query reads it.
    assert single_field_modes(index_file, "tasks", "state") == set()
    assert single_field_modes(index_file, "tasks", "staged") == set()
    assert single_field_modes(index_file, "miners", "staged") == set()


def test_the_index_file_uses_only_known_values(index_file: dict[str, Any]) -> None:
    assert set(index_file) == {"indexes", "fieldOverrides"}
    for index in index_file["indexes"]:
        assert len(index["fields"]) >= 2, "single-field indexes belong in fieldOverrides"
        for field in index["fields"]:
            assert set(field) in ({"fieldPath", "order"}, {"fieldPath", "arrayConfig"})
            assert field.get("order", ASCENDING) in {ASCENDING, DESCENDING}
            assert field.get("arrayConfig", CONTAINS) == CONTAINS
    for override in index_file["fieldOverrides"]:
        for index in override["indexes"]:
            assert index["queryScope"] in {"COLLECTION", "COLLECTION_GROUP"}

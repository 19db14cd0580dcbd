"""Events to stored bytes and back: typed payloads, canonical encoding, hashes, upcasting."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates import fold
from events import (
    EVENT_CLASSES,
    EVENT_TYPES,
    GENESIS_HASH,
    PRIORITIES,
    TASK_TYPES,
    Event,
    MinerAssigned,
    MinerAssignment,
    MinerFailed,
    MinerResponded,
    MinerTimedOut,
    TaskApproved,
    TaskArchived,
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskDistributed,
    TaskEvaluated,
    TaskFailed,
    UnknownEventType,
    canonical,
    format_time,
    from_document,
    from_stored,
    parse_time,
    payload_of,
    seal,
    to_data,
    upcast,
)

# -- strategies ----------------------------------------------------------------

# orjson encodes integers up to 64 bits and no NaN or infinity: JSON values that
# can be stored at all.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(), json_values, max_size=4)
# Real offsets are whole minutes (pydantic drops sub-minute ones when it writes JSON).
offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.just(UTC) | offsets,
)
names = st.text(min_size=1, max_size=20)
ratios = st.floats(min_value=0.0, max_value=1.0)
assignments = st.builds(MinerAssignment, hotkey=names, deadline=moments)

PAYLOADS: dict[type[Event], st.SearchStrategy[Any]] = {
    TaskCreated: st.builds(
        TaskCreated,
        task_type=st.sampled_from(TASK_TYPES),
        priority=st.sampled_from(PRIORITIES),
        input=json_objects,
        client=names,
        deadline=moments,
        miners_wanted=st.integers(min_value=1, max_value=64),
        miner_timeout_seconds=st.floats(min_value=0.001, max_value=1e6),
        idempotency_key=st.none() | names,
        blobs=st.lists(names, max_size=3).map(tuple),
    ),
    TaskDistributed: st.builds(
        TaskDistributed, assignments=st.lists(assignments, min_size=1, max_size=4).map(tuple)
    ),
    MinerAssigned: st.builds(MinerAssigned, assignment=assignments, replaces=st.none() | names),
    MinerResponded: st.builds(
        MinerResponded,
        hotkey=names,
        result=json_objects,
        latency_ms=st.floats(min_value=0, max_value=1e9),
    ),
    MinerFailed: st.builds(MinerFailed, hotkey=names, reason=st.text()),
    MinerTimedOut: st.builds(MinerTimedOut, hotkey=names),
    TaskCompleted: st.builds(TaskCompleted, responded=st.lists(names, max_size=4).map(tuple)),
    TaskEvaluated: st.builds(
        TaskEvaluated,
        validator=names,
        scores=st.dictionaries(names, ratios, max_size=4),
        rewards=st.dictionaries(names, ratios, max_size=4),
    ),
    TaskApproved: st.builds(TaskApproved, miner_hotkey=names, score=ratios, result=json_objects),
    TaskFailed: st.builds(TaskFailed, code=names, message=st.text()),
    TaskCancelled: st.builds(TaskCancelled, reason=st.text()),
    TaskArchived: st.builds(TaskArchived, blobs_deleted=st.lists(names, max_size=3).map(tuple)),
}
payloads = st.one_of(*PAYLOADS.values())


@st.composite
def envelope_fields(draw: st.DrawFn, payload: st.SearchStrategy[Any] = payloads) -> dict[str, Any]:
    event = draw(payload)
    return {
        "event_id": draw(st.uuids()).hex,
        "task_id": draw(names),
        "sequence": draw(st.integers(min_value=1, max_value=2**31)),
        "type": event.TYPE,
        "version": event.VERSION,
        "occurred_at": draw(moments),
        "actor": draw(names),
        "data": to_data(event),
        "prev_hash": draw(st.sampled_from([GENESIS_HASH, hashlib.sha256(b"x").hexdigest()])),
        "causation_id": draw(st.none() | names),
        "correlation_id": draw(st.none() | names),
    }


# -- round trips ---------------------------------------------------------------


def test_every_event_type_has_a_strategy_and_a_unique_name() -> None:
    assert set(PAYLOADS) == set(EVENT_CLASSES)
    assert len(EVENT_TYPES) == len(EVENT_CLASSES)


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.TYPE)
@settings(max_examples=40)
@given(data=st.data())
def test_every_event_type_round_trips_through_the_stored_form(
    cls: type[Event], data: st.DataObject
) -> None:
    event = data.draw(PAYLOADS[cls])
    fields = data.draw(envelope_fields(st.just(event)))
    sealed = seal(**fields)
    stored = from_stored(sealed.body, sealed.hash)
    assert stored == sealed
    assert stored.body == sealed.body
    assert stored.recomputed_hash() == stored.hash
    assert payload_of(stored) == event
    assert type(payload_of(stored)) is cls
    assert parse_time(stored.occurred_at) == fields["occurred_at"]


@given(fields=envelope_fields())
def test_the_json_document_form_round_trips_to_the_same_bytes(fields: dict[str, Any]) -> None:
    sealed = seal(**fields)
    document = json.loads(json.dumps(sealed.to_document()))
    again = from_document(document)
    assert again == sealed
    assert again.body == sealed.body
    assert again.recomputed_hash() == sealed.hash


# -- canonical encoding --------------------------------------------------------

# Floats aside (Python's json spells 1e16 as 1e+16), the standard library's
# sorted, separator-tight output is the canonical form, written independently.
plain_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(value=plain_values)
def test_canonical_encoding_sorts_keys_and_has_no_whitespace(value: Any) -> None:
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical(value) == expected.encode()


@given(value=st.dictionaries(st.text(), json_values, max_size=6), data=st.data())
def test_canonical_encoding_ignores_insertion_order(value: dict[str, Any], data: Any) -> None:
    reordered = dict(data.draw(st.permutations(list(value.items()))))
    assert canonical(reordered) == canonical(value)
    assert canonical(json.loads(canonical(value))) == canonical(value)


def test_the_sealed_body_is_the_documented_canonical_form() -> None:
    """Golden bytes: changing the encoding would orphan every hash already stored."""
    sealed = seal(
        event_id="00000000-0000-0000-0000-000000000001",
        task_id="task-1",
        sequence=1,
        type="TaskCancelled",
        version=1,
        occurred_at=datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        actor="client:k1",
        data={"reason": "no longer needed"},
        prev_hash=GENESIS_HASH,
    )
    expected = (
        '{"actor":"client:k1","causation_id":null,"correlation_id":null,'
        '"data":{"reason":"no longer needed"},"id":"00000000-0000-0000-0000-000000000001",'
        '"occurred_at":"2025-01-02T03:04:05.000006Z","prev_hash":"' + GENESIS_HASH + '",'
        '"sequence":1,"task_id":"task-1","type":"TaskCancelled","version":1}'
    ).encode()
    assert sealed.body == expected
    assert sealed.hash == hashlib.sha256(expected).hexdigest()


@given(moment=moments)
def test_times_have_one_spelling_per_instant(moment: datetime) -> None:
    text = format_time(moment)
    assert text.endswith("Z") and len(text) == len("2025-01-02T03:04:05.000006Z")
    assert parse_time(text) == moment
    assert format_time(moment.astimezone(timezone(timedelta(hours=5)))) == text


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        format_time(datetime(2025, 1, 1))


# -- the hash covers every field -----------------------------------------------

CHANGES: dict[str, Callable[[Any], Any]] = {
    "event_id": lambda v: v + "0",
    "task_id": lambda v: v + "0",
    "sequence": lambda v: v + 1,
    "type": lambda v: "TaskFailed" if v != "TaskFailed" else "TaskCancelled",
    "version": lambda v: v + 1,
    "occurred_at": lambda v: v + timedelta(microseconds=1),
    "actor": lambda v: v + "0",
    "prev_hash": lambda v: hashlib.sha256(v.encode()).hexdigest(),
    "causation_id": lambda v: "cause" if v is None else None,
    "correlation_id": lambda v: "correlation" if v is None else None,
}


@given(fields=envelope_fields(), field=st.sampled_from(sorted(CHANGES)))
def test_the_hash_changes_when_any_envelope_field_changes(
    fields: dict[str, Any], field: str
) -> None:
    changed = {**fields, field: CHANGES[field](fields[field])}
    assert seal(**changed).hash != seal(**fields).hash


@given(fields=envelope_fields(), data=st.data())
def test_the_hash_changes_when_any_payload_value_changes(
    fields: dict[str, Any], data: st.DataObject
) -> None:
    payload = fields["data"]
    key = data.draw(st.sampled_from(sorted(payload)))
    replacement = data.draw(json_values.filter(lambda v: canonical(v) != canonical(payload[key])))
    changed = {**fields, "data": {**payload, key: replacement}}
    assert seal(**changed).hash != seal(**fields).hash


# -- schema evolution ------------------------------------------------------------

v1_task_created = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(TASK_TYPES),
        "priority": st.sampled_from(PRIORITIES),
        "input": json_objects,
        "client": names,
        "deadline": moments.map(format_time),
    },
    optional={"idempotency_key": st.none() | names, "blobs": st.lists(names, max_size=3)},
)


@given(data=v1_task_created, occurred_at=moments)
def test_a_stored_v1_task_created_reads_as_the_current_version(
    data: dict[str, Any], occurred_at: datetime
) -> None:
    stored = seal(
        event_id="e1",
        task_id="task-1",
        sequence=1,
        type="TaskCreated",
        version=1,
        occurred_at=occurred_at,
        actor="client:k1",
        data=data,
        prev_hash=GENESIS_HASH,
    )
    reread = from_stored(stored.body, stored.hash)
    event = payload_of(reread)
    assert isinstance(event, TaskCreated)
    assert event.task_type == data["kind"]
    assert event.miners_wanted == 3
    assert event.miner_timeout_seconds == 30.0
    assert event.priority == data["priority"]
    assert event.input == data["input"]
    assert event.client == data["client"]
    assert event.deadline == parse_time(data["deadline"])
    assert event.idempotency_key == data.get("idempotency_key")
    assert event.blobs == tuple(data.get("blobs", ()))
    # Reading upcasts in memory only: the stored fact, and so its hash, never change.
    assert reread.version == 1 and reread.data == data
    assert reread.recomputed_hash() == stored.hash
    state = fold("task-1", [reread])
    assert (state.status, state.task_type, state.miners_wanted) == ("PENDING", data["kind"], 3)


def test_upcasting_leaves_the_stored_payload_untouched() -> None:
    data = {"kind": "tts", "priority": "low", "input": {}, "client": "c", "deadline": "x"}
    before = dict(data)
    upgraded = upcast("TaskCreated", 1, data)
    assert data == before
    assert "kind" not in upgraded and upgraded["task_type"] == "tts"


@pytest.mark.parametrize(
    ("type_name", "version"),
    [("TaskCreated", 0), ("TaskCreated", 3), ("MinerResponded", 2), ("TaskExploded", 1)],
)
def test_unknown_types_and_versions_are_refused(type_name: str, version: int) -> None:
    with pytest.raises(UnknownEventType):
        upcast(type_name, version, {})

"""The Kafka log's heads table: a bounded memory, and the same answers as a plain dict."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.kafka import Head, HeadsTable


def head(sequence: int) -> Head:
    return Head(sequence, f"{sequence:064x}", sequence * 10, sequence * 10 + 9)


def test_memory_stays_bounded_and_spilled_heads_come_back() -> None:
    table = HeadsTable(in_memory=100)
    for n in range(5_000):
        table.put(f"task-{n}", head(n))
        assert table.resident <= 110
    assert table.get("task-0") == head(0)  # the first spilled
    assert table.get("task-4999") == head(4999)
    assert table.get("task-5000") is None
    assert dict(table.items()) == {f"task-{n}": head(n) for n in range(5_000)}
    table.close()


def test_a_head_changed_after_it_was_spilled_reads_as_changed() -> None:
    table = HeadsTable(in_memory=2)
    for n in range(10):
        table.put(f"task-{n}", head(1))
    table.put("task-0", head(7))  # task-0's old head is on disk
    for n in range(10, 20):  # push the new one out to disk too
        table.put(f"task-{n}", head(1))
    assert table.get("task-0") == head(7)
    assert dict(table.items())["task-0"] == head(7)
    table.close()


def test_in_memory_must_hold_at_least_one_head() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        HeadsTable(in_memory=0)


operations = st.lists(
    st.tuples(
        st.sampled_from(["put", "get"]),
        st.integers(min_value=0, max_value=30),  # task
        st.integers(min_value=1, max_value=50),  # sequence
    ),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(in_memory=st.integers(min_value=1, max_value=12), script=operations)
def test_it_answers_as_a_dict_would(in_memory: int, script: list[tuple[str, int, int]]) -> None:
    table = HeadsTable(in_memory=in_memory)
    model: dict[str, Head] = {}
    try:
        for operation, task, sequence in script:
            task_id = f"task-{task}"
            if operation == "put":
                table.put(task_id, head(sequence))
                model[task_id] = head(sequence)
            else:
                assert table.get(task_id) == model.get(task_id)
            assert table.resident <= in_memory + max(1, in_memory // 10)
        listed = list(table.items())
        assert len(listed) == len(model)
        assert dict(listed) == model
    finally:
        table.close()

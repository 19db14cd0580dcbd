"""The first response: a fact of the log, set by the first MinerResponded and never moved."""

from __future__ import annotations

from aggregates import TaskState, fold
from events import format_time
from projections import state_from_doc, state_to_doc, status_document
from tests.support.histories import T0, Ledger, lifecycle

HOTKEYS = ("hk-a", "hk-b", "hk-c")


def _run(ending: str) -> tuple[Ledger, str]:
    ledger = Ledger()
    for command in lifecycle(ending, T0, HOTKEYS):
        ledger.execute("task-1", command)
    return ledger, "task-1"


def test_the_earliest_response_is_the_first_and_stays_through_approval() -> None:
    ledger, task_id = _run("approved")
    state = ledger.state(task_id)
    assert state.status == "APPROVED"
    first = state.first_response
    assert first is not None
    responses = [e for e in ledger.stream(task_id) if e.type == "MinerResponded"]
    assert first.hotkey == responses[0].data["hotkey"] == "hk-a"
    assert first.received_at == responses[0].occurred
    assert first.result == {"text": "transcript by hk-a"}
    assert first.latency_ms == 120.5


def test_a_task_without_any_response_has_no_first_response() -> None:
    for ending in ("all_failed", "all_timed_out", "cancelled_pending", "expired_pending"):
        ledger, task_id = _run(ending)
        assert ledger.state(task_id).first_response is None, ending
        assert status_document(ledger.state(task_id))["first_response"] is None


def test_failover_keeps_the_answer_that_came_first() -> None:
    ledger, task_id = _run("failover_approved")
    first = ledger.state(task_id).first_response
    assert first is not None and first.hotkey == "hk-b"


def test_replay_reproduces_the_first_response() -> None:
    ledger, task_id = _run("late_partial_approved")
    replayed = fold(task_id, ledger.stream(task_id))
    assert replayed.first_response == ledger.state(task_id).first_response
    assert replayed == ledger.state(task_id)


def test_the_read_model_codec_keeps_it_and_reads_older_documents() -> None:
    ledger, task_id = _run("approved")
    state = ledger.state(task_id)
    assert state_from_doc(state_to_doc(state)) == state
    older = state_to_doc(state)
    del older["first_response"]
    assert state_from_doc(older).first_response is None


def test_the_status_document_shows_it_unscored_and_tts_as_a_link() -> None:
    ledger, task_id = _run("approved")
    state = ledger.state(task_id)
    assert state.first_response is not None
    before_scoring = state._replace(status="DONE", result=None)
    document = status_document(before_scoring)
    assert document["result"] is None
    assert document["first_response"] == {
        "miner_hotkey": "hk-a",
        "latency_ms": 120.5,
        "received_at": format_time(state.first_response.received_at),
        "result": {"text": "transcript by hk-a"},
    }
    tts: TaskState = state._replace(task_type="tts")
    assert status_document(tts)["first_response"]["result"] == {
        "audio": f"/api/v1/task/{task_id}/result?provisional=true",
        "content_type": "audio/wav",
    }

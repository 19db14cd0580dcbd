"""The task status document of the API contract, derived from the folded state."""

from __future__ import annotations

from typing import Any

from aggregates import FirstResponse, TaskState
from events import format_time


def provisional_result(state: TaskState, first: FirstResponse) -> dict[str, Any]:
    """The first response's result as the client sees it: text as it is, audio as a link."""
    if state.task_type == "tts":
        return {
            "audio": f"/api/v1/task/{state.task_id}/result?provisional=true",
            "content_type": "audio/wav",
        }
    return first.result


def first_response_document(state: TaskState) -> dict[str, Any] | None:
    first = state.first_response
    if first is None:
        return None
    return {
        "miner_hotkey": first.hotkey,
        "latency_ms": first.latency_ms,
        "received_at": format_time(first.received_at),
        "result": provisional_result(state, first),
    }


def status_document(state: TaskState) -> dict[str, Any]:
    responded = sum(1 for slot in state.miners if slot.state == "responded")
    failed = sum(1 for slot in state.miners if slot.state in ("failed", "timed_out"))
    return {
        "task_id": state.task_id,
        "type": state.task_type,
        "status": state.status,
        "priority": state.priority,
        "created_at": format_time(state.created_at) if state.created_at else None,
        "updated_at": format_time(state.updated_at) if state.updated_at else None,
        "version": state.version,
        "progress": {"assigned": len(state.miners), "responded": responded, "failed": failed},
        "miners": [
            {"hotkey": slot.hotkey, "state": slot.state, "latency_ms": slot.latency_ms}
            for slot in state.miners
        ],
        "result": state.result if state.status == "APPROVED" else None,
        "error": state.error,
        "archived": state.archived,
        "first_response": first_response_document(state),
    }

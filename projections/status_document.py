"""The task status document of the API contract, derived from the folded state."""

from __future__ import annotations

from typing import Any

from aggregates import TaskState
from events import format_time


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
    }

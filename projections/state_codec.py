"""TaskState to a JSON document and back: how read models keep the folded state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aggregates import FirstResponse, MinerSlot, TaskState
from events import format_time, parse_time


def _time(moment: datetime | None) -> str | None:
    return format_time(moment) if moment is not None else None


def _parse(text: str | None) -> datetime | None:
    return parse_time(text) if text is not None else None


def state_to_doc(state: TaskState) -> dict[str, Any]:
    return {
        "task_id": state.task_id,
        "status": state.status,
        "version": state.version,
        "task_type": state.task_type,
        "priority": state.priority,
        "client": state.client,
        "input": state.input,
        "deadline": _time(state.deadline),
        "miners_wanted": state.miners_wanted,
        "miner_timeout_seconds": state.miner_timeout_seconds,
        "idempotency_key": state.idempotency_key,
        "blobs": list(state.blobs),
        "created_at": _time(state.created_at),
        "updated_at": _time(state.updated_at),
        "miners": [
            {
                "hotkey": slot.hotkey,
                "state": slot.state,
                "assigned_at": format_time(slot.assigned_at),
                "deadline": format_time(slot.deadline),
                "latency_ms": slot.latency_ms,
                "result": slot.result,
                "reason": slot.reason,
                "replaces": slot.replaces,
            }
            for slot in state.miners
        ],
        "validator": state.validator,
        "scores": state.scores,
        "rewards": state.rewards,
        "result": state.result,
        "winner": state.winner,
        "error": state.error,
        "archived": state.archived,
        "first_response": _first_response_doc(state.first_response),
    }


def _first_response_doc(first: FirstResponse | None) -> dict[str, Any] | None:
    if first is None:
        return None
    return {
        "hotkey": first.hotkey,
        "latency_ms": first.latency_ms,
        "received_at": format_time(first.received_at),
        "result": first.result,
    }


def _first_response(doc: dict[str, Any] | None) -> FirstResponse | None:
    if doc is None:
        return None
    return FirstResponse(
        doc["hotkey"], doc["latency_ms"], parse_time(doc["received_at"]), doc["result"]
    )


def state_from_doc(doc: dict[str, Any]) -> TaskState:
    return TaskState(
        task_id=doc["task_id"],
        status=doc["status"],
        version=doc["version"],
        task_type=doc["task_type"],
        priority=doc["priority"],
        client=doc["client"],
        input=doc["input"],
        deadline=_parse(doc["deadline"]),
        miners_wanted=doc["miners_wanted"],
        miner_timeout_seconds=doc["miner_timeout_seconds"],
        idempotency_key=doc["idempotency_key"],
        blobs=tuple(doc["blobs"]),
        created_at=_parse(doc["created_at"]),
        updated_at=_parse(doc["updated_at"]),
        miners=tuple(
            MinerSlot(
                hotkey=slot["hotkey"],
                state=slot["state"],
                assigned_at=parse_time(slot["assigned_at"]),
                deadline=parse_time(slot["deadline"]),
                latency_ms=slot["latency_ms"],
                result=slot["result"],
                reason=slot["reason"],
                replaces=slot["replaces"],
            )
            for slot in doc["miners"]
        ),
        validator=doc["validator"],
        scores=doc["scores"],
        rewards=doc["rewards"],
        result=doc["result"],
        winner=doc["winner"],
        error=doc["error"],
        archived=doc["archived"],
        # Read models written before answers-first carry no first response: None
        # until `taskledger replay` rebuilds them from the log.
        first_response=_first_response(doc.get("first_response")),
    )

"""Finding a task for a caller: the read model first, the log when the read model lags."""

from __future__ import annotations

from aggregates import TaskState
from http_edge.context import EdgeContext
from http_edge.errors import ApiError


async def current_state(context: EdgeContext, task_id: str) -> TaskState | None:
    """The task as the read model has it, or folded from the log if the read model
    has not caught up yet (so an accepted task is never unknown); None if it does not exist."""
    state = await context.store.get_task(task_id)
    if state is not None:
        return state
    state = await context.commands.load(task_id)
    return state if state.exists else None


def not_found(task_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no task {task_id}")


async def client_task(context: EdgeContext, client: str, task_id: str) -> TaskState:
    """The client's own task; anyone else's is as unknown as a task that does not exist."""
    state = await current_state(context, task_id)
    if state is None or state.client != client:
        raise not_found(task_id)
    return state


async def logged_task(context: EdgeContext, task_id: str) -> TaskState:
    """The task folded from the log: exact, for commands whose checks need the latest state."""
    state = await context.commands.load(task_id)
    if not state.exists:
        raise not_found(task_id)
    return state

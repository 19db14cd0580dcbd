"""Event types by name, and upcasters that read old schema versions as the current one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from events.catalog import EVENT_CLASSES, Event
from events.envelope import Envelope

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownEventType(Exception):
    def __init__(self, type_name: str, version: int) -> None:
        super().__init__(f"unknown event type {type_name!r} version {version}")
        self.type_name = type_name
        self.version = version


EVENT_TYPES: dict[str, type[Event]] = {cls.TYPE: cls for cls in EVENT_CLASSES}
# ``cls.model_validate(data)`` without its Python wrapper: a third of its cost for
# the small payloads of a log, which every fold reads.
_VALIDATE: dict[str, Callable[[dict[str, Any]], Any]] = {
    cls.TYPE: cls.__pydantic_validator__.validate_python for cls in EVENT_CLASSES
}
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register ``fn`` to turn version ``from_version`` of an event into the next one."""

    def register(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(type_name, from_version)] = fn
        return fn

    return register


@upcaster("TaskCreated", 1)
def _task_created_v1(data: dict[str, Any]) -> dict[str, Any]:
    # v1 called the job type `kind` and had no per-task miner settings; the
    # defaults below are what every v1 deployment ran with.
    upgraded = {key: value for key, value in data.items() if key != "kind"}
    upgraded["task_type"] = data["kind"]
    upgraded.setdefault("miners_wanted", 3)
    upgraded.setdefault("miner_timeout_seconds", 30.0)
    return upgraded


def upcast(type_name: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    cls = EVENT_TYPES.get(type_name)
    if cls is None or version < 1 or version > cls.VERSION:
        raise UnknownEventType(type_name, version)
    while version < cls.VERSION:
        step = _UPCASTERS.get((type_name, version))
        if step is None:
            raise UnknownEventType(type_name, version)
        data = step(data)
        version += 1
    return data


def payload_of(envelope: Envelope) -> Event:
    """The envelope's payload as its current typed event, upcast if it was stored older."""
    cls = EVENT_TYPES.get(envelope.type)
    if cls is None:
        raise UnknownEventType(envelope.type, envelope.version)
    data = envelope.data
    if envelope.version != cls.VERSION:
        data = upcast(envelope.type, envelope.version, data)
    event: Event = _VALIDATE[envelope.type](data)
    return event


def to_data(event: Event) -> dict[str, Any]:
    """The payload as JSON data: ``event.model_dump(mode="json")``, without its wrapper."""
    data: dict[str, Any] = event.__pydantic_serializer__.to_python(event, mode="json")
    return data

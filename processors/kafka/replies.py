"""The command processor's answer to one command, as it travels on ``<prefix>.replies``.

Written in the same transaction as the command's events, so a reply is seen (by a
``read_committed`` consumer) exactly when the events it reports are in the log. It carries
what :class:`~processors.command_core.Outcome` carries — the task's state after the command and
the events it appended — or the domain error that refused the command, by type and message,
so a sender far from the processor handles a refusal exactly as a local one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aggregates import DomainError, TaskState
from events import Envelope, LogUnavailable, canonical
from events.codec import decode
from events.envelope import from_document
from projections.state_codec import state_from_doc, state_to_doc


class NoReply(LogUnavailable):
    """No command processor answered in time (the command may still be decided later)."""


def _error_types(base: type[DomainError]) -> dict[str, type[DomainError]]:
    found = {base.__name__: base}
    for sub in base.__subclasses__():
        found.update(_error_types(sub))
    return found


@dataclass(frozen=True, slots=True)
class CommandReply:
    command_id: str
    state: TaskState | None = None
    events: tuple[Envelope, ...] = ()
    error: DomainError | None = None

    def encode(self) -> bytes:
        fields: dict[str, Any] = {"command_id": self.command_id}
        if self.error is not None:
            fields["error"] = {"type": type(self.error).__name__, "message": self.error.message}
        if self.state is not None:
            fields["state"] = state_to_doc(self.state)
        if self.state is not None or self.events:  # a ledger event has no task state
            fields["events"] = [envelope.to_document() for envelope in self.events]
        return canonical(fields)

    @classmethod
    def decode(cls, raw: bytes) -> CommandReply:
        fields = decode(raw)
        error = None
        if "error" in fields:
            kind = _error_types(DomainError).get(fields["error"]["type"], DomainError)
            error = kind(str(fields["error"]["message"]))
        state = state_from_doc(fields["state"]) if "state" in fields else None
        events = tuple(from_document(document) for document in fields.get("events", ()))
        return cls(str(fields["command_id"]), state, events, error)

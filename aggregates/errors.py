"""Domain errors as types. ``http_edge`` maps each to a status code in one place."""

from __future__ import annotations


class DomainError(Exception):
    code = "domain_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class IllegalTransition(DomainError):
    """The command or event is not allowed in the task's current state."""

    code = "invalid_state"


class TaskNotFound(DomainError):
    code = "not_found"


class TaskAlreadyExists(DomainError):
    code = "already_exists"


class MinerNotAssigned(DomainError):
    code = "not_assigned"


class AlreadyAnswered(DomainError):
    code = "already_answered"


class MinerAlreadyAssigned(DomainError):
    code = "miner_already_assigned"


class InvalidCommand(DomainError):
    code = "invalid_command"

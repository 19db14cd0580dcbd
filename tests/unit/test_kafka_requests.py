"""A request to the brokers is asked again while they answer "try again", within its time."""

from __future__ import annotations

import pytest
from aiokafka.errors import NotLeaderForPartitionError, UnsupportedVersionError

from events import LogUnavailable
from events.kafka.clients import ClientSettings

SETTINGS = ClientSettings(
    bootstrap="127.0.0.1:9",
    prefix="test",
    transaction_timeout_ms=1_000,
    request_timeout_ms=250,
    poll_ms=10,
)


class Answers:
    """Refuses with ``error`` for the first ``refusals`` calls, then answers."""

    def __init__(self, refusals: int, error: Exception) -> None:
        self.refusals, self.error, self.calls = refusals, error, 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.refusals:
            raise self.error
        return "answer"


async def test_a_retriable_refusal_is_asked_again() -> None:
    # Topics just created: the broker knows no leader for a moment.
    answers = Answers(3, NotLeaderForPartitionError())
    assert await SETTINGS.timed(answers) == "answer"
    assert answers.calls == 4


async def test_other_errors_are_not_retried() -> None:
    answers = Answers(1, UnsupportedVersionError())
    with pytest.raises(UnsupportedVersionError):
        await SETTINGS.timed(answers)
    assert answers.calls == 1


async def test_refusals_that_outlast_the_time_end_as_log_unavailable() -> None:
    answers = Answers(10_000, NotLeaderForPartitionError())
    with pytest.raises(LogUnavailable, match="NotLeaderForPartition"):
        await SETTINGS.timed(answers)
    assert 1 < answers.calls < 100

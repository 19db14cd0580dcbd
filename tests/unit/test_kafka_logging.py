"""The Kafka backend's logging policy: installed by the program at start-up, not at import."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from events.kafka import AIOKAFKA, TransientStartupErrors, configure_kafka_logging


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected() -> Iterator[Collected]:
    """A root handler as ``logging.basicConfig`` installs one; loggers restored afterwards."""
    root, aiokafka = logging.getLogger(), logging.getLogger(AIOKAFKA)
    saved = (root.level, aiokafka.level)
    handler = Collected()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        aiokafka.setLevel(saved[1])


def _log_startup(collected: Collected) -> list[tuple[str, str, str]]:
    logging.getLogger("aiokafka.consumer.group_coordinator").error(
        "Group Coordinator Request failed: %s",
        "[Error 15] GroupCoordinatorNotAvailableError",
    )
    logging.getLogger("aiokafka.producer.sender").error(
        "Got error produce response: %s", "NotLeaderForPartitionError"
    )
    logging.getLogger("aiokafka.consumer.group_coordinator").info("(Re-)joining group g")
    logging.getLogger("aiokafka.client").error("Unable connect to node with id 1: refused")
    logging.getLogger("processors.kafka.processor").info("owning partitions [0, 1, 2]")
    return [(r.name, r.levelname, r.getMessage()) for r in collected.records]


def test_by_default_routine_chatter_and_retried_transients_stay_out(collected: Collected) -> None:
    configure_kafka_logging()
    assert _log_startup(collected) == [
        ("aiokafka.client", "ERROR", "Unable connect to node with id 1: refused"),
        ("processors.kafka.processor", "INFO", "owning partitions [0, 1, 2]"),
    ]


def test_verbose_shows_the_transients_as_debug(collected: Collected) -> None:
    configure_kafka_logging(verbose=True)
    levels = {message: level for _, level, message in _log_startup(collected)}
    assert levels == {
        "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError": "DEBUG",
        "Got error produce response: NotLeaderForPartitionError": "DEBUG",
        "(Re-)joining group g": "INFO",
        "Unable connect to node with id 1: refused": "ERROR",
        "owning partitions [0, 1, 2]": "INFO",
    }


def test_configuring_twice_installs_each_filter_once(collected: Collected) -> None:
    configure_kafka_logging()
    configure_kafka_logging()
    assert sum(isinstance(f, TransientStartupErrors) for f in collected.filters) == 1


def test_importing_the_kafka_backend_configures_no_logging() -> None:
    probe = (
        "import logging, events.kafka;"
        "print(len(logging.getLogger('asyncio').filters), logging.getLogger('aiokafka').level)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["0", "0"]

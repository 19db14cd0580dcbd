"""One real Kafka broker for the whole test run, shared by every module that needs Kafka.

Booting a broker costs several seconds of two shared cores; a dozen modules each booting
their own made that the largest fixed cost of the Kafka tests. Modules share this one and
isolate themselves by a fresh topic prefix per test (``<module>-<uuid>``): every topic, the
transactional ids and the consumer group of ``<prefix>.commands`` derive from the prefix, so
tests never see each other's records.

Modules that kill or restart the broker (``test_kafka_faults.py``, ``test_kafka_broker.py``)
keep a private broker under the same fixture name, which overrides this one for them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from events.kafka import install_fenced_transaction_filter
from tests.support.kafka_broker import KafkaBroker


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker.start(tmp_path_factory.mktemp("kafka-session"))
    try:
        yield broker
    finally:
        broker.stop()


def pytest_configure(config: pytest.Config) -> None:
    # Explicit, as in the CLI (``events.kafka`` installs nothing at import): tests run
    # fenced Kafka writers in this process.
    install_fenced_transaction_filter()

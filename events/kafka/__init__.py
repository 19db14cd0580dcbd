"""The Kafka event log, one concern per module.

- :mod:`~events.kafka.heads`: each stream's head, in a table whose memory stays bounded;
- :mod:`~events.kafka.quiet_logs`: the logging policy a process installs when it starts.

Importing any of them changes nothing outside it (no logging filter, no level).
"""

from events.kafka.heads import DEFAULT_HEADS_IN_MEMORY, Head, HeadsTable
from events.kafka.quiet_logs import (
    AIOKAFKA,
    TransientStartupErrors,
    configure_kafka_logging,
    install_fenced_transaction_filter,
)

__all__ = [
    "AIOKAFKA",
    "DEFAULT_HEADS_IN_MEMORY",
    "Head",
    "HeadsTable",
    "TransientStartupErrors",
    "configure_kafka_logging",
    "install_fenced_transaction_filter",
]

"""The Kafka event log, one concern per module.

- :mod:`~events.kafka.topics`: the topics, and which partition holds a task;
- :mod:`~events.kafka.heads`: each stream's head, in a table whose memory stays bounded;
- :mod:`~events.kafka.partition_state`: what the log and its writers know of the partitions;
- :mod:`~events.kafka.writer`: the single, transactional writer of some partitions;
- :mod:`~events.kafka.reads`, :mod:`~events.kafka.subscriptions`: streams, subscriptions;
- :mod:`~events.kafka.shares`: a consumer group member's share of the events partitions;
- :mod:`~events.kafka.checkpoints`: consumer checkpoints and the log chain's checkpoints;
- :mod:`~events.kafka.clients`: the clients' settings, and creating the topics;
- :mod:`~events.kafka.log`: :class:`KafkaEventLog`, the ``EventLog`` port on all of them;
- :mod:`~events.kafka.quiet_logs`: the logging policy a process installs when it starts.

Importing any of them changes nothing outside it (no logging filter, no level).
"""

from events.kafka.checkpoints import decode_checkpoint
from events.kafka.heads import DEFAULT_HEADS_IN_MEMORY, Head, HeadsTable
from events.kafka.log import KafkaEventLog
from events.kafka.quiet_logs import (
    AIOKAFKA,
    TransientStartupErrors,
    configure_kafka_logging,
    install_fenced_transaction_filter,
)
from events.kafka.shares import PartitionBatch
from events.kafka.topics import DEFAULT_PARTITIONS, KafkaTopics, input_key, partition_for
from events.kafka.writer import (
    OutRecord,
    PendingAppend,
    StreamWriter,
    TransactionFailed,
    WriterFenced,
)

__all__ = [
    "AIOKAFKA",
    "DEFAULT_HEADS_IN_MEMORY",
    "DEFAULT_PARTITIONS",
    "Head",
    "HeadsTable",
    "KafkaEventLog",
    "KafkaTopics",
    "OutRecord",
    "PartitionBatch",
    "PendingAppend",
    "StreamWriter",
    "TransactionFailed",
    "TransientStartupErrors",
    "WriterFenced",
    "configure_kafka_logging",
    "decode_checkpoint",
    "input_key",
    "install_fenced_transaction_filter",
    "partition_for",
]

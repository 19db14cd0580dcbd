"""Where a Kafka log keeps what: its topics, and which partition holds a task.

Topics (``<prefix>`` is ``taskledger`` unless configured), created at start when missing:

=========================  ====================================  ===================================
topic                      layout                                holds
=========================  ====================================  ===================================
``<prefix>.events``        N partitions, ``cleanup.policy=       every event; key = task id, value =
                           delete``, ``retention.ms=-1``         the envelope's canonical body (the
                                                                 bytes that are hashed), header
                                                                 ``hash``
``<prefix>.heads``         N partitions, compacted               each stream's head: last sequence,
                                                                 hash, offsets of its first and last
                                                                 event; written in the same
                                                                 transaction as the events (and
                                                                 the command processor's input
                                                                 positions, see ``input_key``)
``<prefix>.commands``      N partitions                          commands for the command processor
``<prefix>.status``        N partitions, compacted               task status documents
``<prefix>.deadletter``    1 partition                           commands that could not be decoded
``<prefix>.checkpoints``   1 partition, compacted                consumer checkpoints, by name
``<prefix>.replies``       1 partition, kept an hour             the command processor's answer to
                                                                 each command, by command id
=========================  ====================================  ===================================

A task lives in partition ``murmur2(task id) mod N`` of every keyed topic; this module
computes it (the Java client's default partitioner) rather than leaving it to a producer's
configuration, so a task's commands, events, head and status always share the number.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.partitioner import murmur2

DEFAULT_PARTITIONS = 6


@dataclass(frozen=True, slots=True)
class KafkaTopics:
    prefix: str
    partitions: int

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def heads(self) -> str:
        return f"{self.prefix}.heads"

    @property
    def commands(self) -> str:
        return f"{self.prefix}.commands"

    @property
    def status(self) -> str:
        return f"{self.prefix}.status"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}.deadletter"

    @property
    def checkpoints(self) -> str:
        return f"{self.prefix}.checkpoints"

    @property
    def replies(self) -> str:
        """The command processor's answer to each command, for whoever sent it (short-lived)."""
        return f"{self.prefix}.replies"

    def keyed(self) -> tuple[str, ...]:
        """The co-partitioned topics: a task has the same partition number in each."""
        return (self.events, self.heads, self.commands, self.status)

    def specs(self) -> list[NewTopic]:
        compacted = {"cleanup.policy": "compact"}
        forever = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
        n = self.partitions
        return [
            NewTopic(self.events, n, 1, topic_configs=forever),
            NewTopic(self.heads, n, 1, topic_configs=compacted),
            NewTopic(self.commands, n, 1, topic_configs={}),
            NewTopic(self.status, n, 1, topic_configs=compacted),
            NewTopic(self.deadletter, 1, 1, topic_configs=forever),
            NewTopic(self.checkpoints, 1, 1, topic_configs=compacted),
            NewTopic(self.replies, 1, 1, topic_configs={"retention.ms": str(3_600_000)}),
        ]


@functools.lru_cache(maxsize=1 << 16)
def partition_for(task_id: str, partitions: int) -> int:
    """The partition of a task in every keyed topic (the Java client's default partitioner).

    Remembered: a command's task is looked up several times on its way (plan, commit,
    heads), and murmur2 in pure Python costs more than the lookups around it."""
    hashed: int = murmur2(task_id.encode())
    return (hashed & 0x7FFFFFFF) % partitions


# Heads records under this prefix are not streams' heads but input positions (see
# ``input_key``); no task id starts with a NUL byte.
INPUT_PREFIX = b"\x00input:"


def input_key(tp: TopicPartition) -> bytes:
    """The heads-topic key of a consumer position committed with a writer's transactions.

    The command processor commits its position in ``<prefix>.commands`` partition N as a
    record in heads partition N, in the same transaction as the events it decided: one
    produce request more or less, where a consumer-group offset commit costs two round
    trips to the coordinators (AddOffsetsToTxn, TxnOffsetCommit) and a marker more.
    """
    return INPUT_PREFIX + input_name(tp).encode()


def input_name(tp: TopicPartition) -> str:
    """How an input position's partition is named in its key: ``<topic>:<partition>``."""
    return f"{tp.topic}:{tp.partition}"

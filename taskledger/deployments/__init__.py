"""One deployment object per event-log backend, chosen once from settings.

The composition root (:mod:`taskledger.system`) wires what the deployment gives
and never asks which backend it has.
"""

from __future__ import annotations

from events import EventLog
from events.capabilities import LogFeatures
from taskledger.backends import event_log_kind, open_kafka_log, open_sqlite_log
from taskledger.deployments.deployment import Deployment, RegistersOwned, RegistersSingletons
from taskledger.settings import Settings


def open_deployment(settings: Settings) -> Deployment:
    if event_log_kind(settings) == "kafka":
        from taskledger.deployments.kafka import KafkaDeployment

        return KafkaDeployment(open_kafka_log(settings))
    from taskledger.deployments.embedded import EmbeddedDeployment

    return EmbeddedDeployment(open_sqlite_log(settings))


def open_log(settings: Settings) -> tuple[EventLog, LogFeatures]:
    """The log alone, and what it can do: for tools that read it (the audit)."""
    if event_log_kind(settings) == "kafka":
        from taskledger.deployments import kafka

        kafka_log = open_kafka_log(settings)
        return kafka_log, kafka.log_features(kafka_log)
    from taskledger.deployments import embedded

    sqlite_log = open_sqlite_log(settings)
    return sqlite_log, embedded.log_features(sqlite_log)


__all__ = [
    "Deployment",
    "RegistersOwned",
    "RegistersSingletons",
    "open_deployment",
    "open_log",
]

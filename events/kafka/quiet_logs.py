"""How the Kafka backend's logs reach an operator: what a process installs when it starts.

Nothing here runs at import: a program calls ``configure_kafka_logging`` once, after setting
up its own handlers (the CLI does, in ``taskledger.cli.main``; the test run does, in
``tests.support.kafka_session``).

- aiokafka narrates every subscription, group join and coordinator lookup at INFO: routine,
  two dozen lines around the banner of ``taskledger dev``. Its loggers default to WARNING;
  ``verbose`` (``taskledger -v``) lets them through again.
- While a fresh broker creates topics and the group coordinator's own topic, aiokafka logs
  ERROR for conditions it then retries and resolves by itself (no leader for a new partition
  yet, the group coordinator not there yet). Those records become DEBUG: seen with ``-v``,
  not shouted at a newcomer. A condition that lasts surfaces as our own error instead.
  (Waiting for every partition's leader after creating the topics does not prevent them:
  the metadata names a leader a moment before the broker answers ListOffsets for it.)
- A fenced producer's unawaited futures are logged by asyncio in one line, without their
  traceback (see ``FencedTransactionNoise``).
"""

from __future__ import annotations

import logging

from aiokafka.errors import ProducerFenced

AIOKAFKA = "aiokafka"
_DEMOTED = "taskledger_demoted_transient"

# aiokafka reports these with ``log.error("... %s", err)`` (the error's class name in the
# text) and then retries them itself: a new partition without a leader yet, the group
# coordinator (its ``__consumer_offsets`` topic) not there yet on a fresh broker.
TRANSIENT_AT_START = (
    "NotLeaderForPartitionError",
    "LeaderNotAvailableError",
    "GroupCoordinatorNotAvailableError",
    "NotCoordinatorForGroupError",
)


class FencedTransactionNoise(logging.Filter):
    """Log a fenced producer's unawaited futures in one line, without their traceback.

    A fenced aiokafka producer fails futures that nobody awaits (the writer learns of the
    fence from the call that failed), and asyncio logs each with its traceback when it is
    collected. Formatting tracebacks from inside the collector, while another traceback is
    being formatted, corrupts the ast module's recursion counter on Python 3.11.7 ("AST
    constructor recursion depth mismatch"); every later traceback in the process then fails
    to format, and so does any later import that pytest rewrites.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ProducerFenced):
            record.exc_info = None
            record.exc_text = None
        return True


class TransientStartupErrors(logging.Filter):
    """Demote aiokafka's ERROR records about conditions it retries by itself to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Each handler runs this on the same record: the first one demotes it, all decide alike.
        if not getattr(record, _DEMOTED, False):
            if record.levelno < logging.WARNING or not record.name.startswith(AIOKAFKA):
                return True
            text = record.getMessage()
            if not any(name in text for name in TRANSIENT_AT_START):
                return True
            setattr(record, _DEMOTED, True)
        record.levelno = logging.DEBUG
        record.levelname = logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def _install(logger: logging.Logger, kind: type[logging.Filter]) -> None:
    if not any(isinstance(existing, kind) for existing in logger.filters):
        logger.addFilter(kind())


def install_fenced_transaction_filter() -> None:
    """The asyncio part alone (idempotent): what any process running Kafka writers needs."""
    _install(logging.getLogger("asyncio"), FencedTransactionNoise)


def configure_kafka_logging(*, verbose: bool = False) -> None:
    """Install the Kafka backend's logging policy (idempotent)."""
    install_fenced_transaction_filter()
    aiokafka = logging.getLogger(AIOKAFKA)
    aiokafka.setLevel(logging.DEBUG if verbose else logging.WARNING)
    # Logger filters apply only to records logged on that very logger, not to its children's:
    # the filter goes on the handlers that print aiokafka's records, i.e. the root's.
    for handler in logging.getLogger().handlers:
        _install_on_handler(handler)


def _install_on_handler(handler: logging.Handler) -> None:
    if not any(isinstance(existing, TransientStartupErrors) for existing in handler.filters):
        handler.addFilter(TransientStartupErrors())

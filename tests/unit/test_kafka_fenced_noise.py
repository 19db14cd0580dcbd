"""A fenced producer's unawaited futures are logged without their tracebacks."""

from __future__ import annotations

import logging
import sys

import pytest
from aiokafka.errors import ProducerFenced

from events.kafka import install_fenced_transaction_filter


def _record(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "asyncio", logging.ERROR, __file__, 1, "Future exception was never retrieved", (), exc_info
    )


@pytest.mark.parametrize(
    ("error", "keeps_traceback"), [(ProducerFenced(), False), (RuntimeError("boom"), True)]
)
def test_only_a_fenced_producers_traceback_is_left_out(
    error: BaseException, keeps_traceback: bool
) -> None:
    install_fenced_transaction_filter()
    record = _record(error)
    assert logging.getLogger("asyncio").filter(record)
    assert (record.exc_info is not None) is keeps_traceback
    assert "never retrieved" in record.getMessage()

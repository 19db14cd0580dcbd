"""A log (or command processor) that does not answer is a 503 with Retry-After, not a 500."""

from __future__ import annotations

from events import LogUnavailable
from http_edge.errors import as_api_error
from processors.kafka.replies import NoReply


def test_no_reply_from_a_command_processor_is_unavailable() -> None:
    error = as_api_error(NoReply("no command processor answered command c-1 within 30s"))
    assert error is not None
    response = error.response()
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert isinstance(NoReply("x"), LogUnavailable)
    assert b'"code":"unavailable"' in response.body.replace(b" ", b"")  # type: ignore[union-attr]

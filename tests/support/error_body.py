"""The API's one error shape, as every endpoint answers it (``../shared/API.md``)."""

from __future__ import annotations

from typing import Any


def assert_error(body: Any, code: str | None = None, *, message_text: bool = False) -> None:
    """``body`` is ``{"error": {"code", "message"}}`` and nothing else, with ``code`` if given;
    with ``message_text`` the message must also be a non-empty string."""
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    if message_text:
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code

"""Settings from the environment: where the projection runs."""

from __future__ import annotations

import pytest

from taskledger.settings import SettingsError, from_environment


def test_the_projection_runs_inline_unless_asked_otherwise() -> None:
    assert from_environment({}).projection == "inline"
    assert from_environment({"TASKLEDGER_PROJECTION": "process"}).projection == "process"


def test_an_unknown_projection_place_is_a_clear_error() -> None:
    with pytest.raises(SettingsError, match="TASKLEDGER_PROJECTION"):
        from_environment({"TASKLEDGER_PROJECTION": "elsewhere"})

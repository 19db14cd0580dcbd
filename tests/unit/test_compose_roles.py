"""docker-compose.kafka.yml runs each of `taskledger serve`'s split roles, and no other."""

from __future__ import annotations

import re
from pathlib import Path

from taskledger.cli import SERVE_ROLES

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.kafka.yml"


def test_compose_runs_every_split_role() -> None:
    commanded = re.findall(r'command: \["serve", "--role", "(\w+)"\]', COMPOSE.read_text())
    assert sorted(commanded) == sorted(set(commanded)), "one service per role"
    assert set(commanded) == set(SERVE_ROLES) - {"all"}


def test_compose_processors_leave_projections_to_their_workers() -> None:
    processors = COMPOSE.read_text().split("\n  processors:\n", 1)[1].split("\n\n", 1)[0]
    assert "TASKLEDGER_PROJECTION: workers" in processors

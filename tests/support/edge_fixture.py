"""The ``edge`` fixture: a running edge per test (``running_edge``), shaped by a marker.

A module (in ``pytestmark``) or a single test asks for its variant with
``@pytest.mark.edge(...)``, whose keywords are ``running_edge``'s: ``miners``,
``miners_per_task``, ``stream_heartbeat_seconds`` and any setting. The closest marker
wins whole, so a test's own marker replaces its module's rather than adding to it.
Without a marker the edge has one manual miner and the default settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.edge_system import Edge, running_edge


@pytest.fixture
async def edge(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Edge]:
    marker = request.node.get_closest_marker("edge")
    options = marker.kwargs if marker is not None else {}
    async with running_edge(tmp_path, **options) as running:
        yield running


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "edge(**options): how the `edge` fixture builds its edge (running_edge's keywords)",
    )

"""What the proxy leaves on disk is its own, and what it derives is not guessable."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest

from taskledger.dev import dev_api_key
from taskledger.settings import Settings
from tests.support.edge_system import running_edge

pytestmark = pytest.mark.slow


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_data_dir_databases_and_secrets_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: files 0644 unless made otherwise
    try:
        async with running_edge(tmp_path) as edge:
            await edge.submit()
            data_dir = edge.data_dir
            databases = sorted(data_dir.glob("*.db*"))
            assert any(path.name.endswith("-wal") for path in databases)
            assert mode(data_dir) == 0o700
            for path in [data_dir / "link-secret", *databases]:
                assert mode(path) == 0o600, path.name
        settings, _ = dev_api_key(Settings(data_dir=tmp_path / "dev"))
        assert mode(settings.data_dir) == 0o700
        assert mode(settings.data_dir / "api-key") == 0o600
    finally:
        os.umask(old)


async def test_idempotent_task_ids_are_keyed_with_the_deployments_secret(tmp_path: Path) -> None:
    headers = {"Idempotency-Key": "order-42"}
    ids = []
    for deployment in ("one", "two"):
        async with running_edge(tmp_path / deployment) as edge:
            first = (await edge.submit(headers=headers))["task_id"]
            again = await edge.submit(headers=headers)
            assert again["task_id"] == first
            ids.append(first)
    # Before: uuid5 of a namespace in the source, the client's name and the key.
    public = uuid.uuid5(uuid.UUID("6f1c5f8e-3f2a-4d0e-9a57-0c1b7d6e2a11"), "alice\norder-42")
    assert str(public) not in ids
    assert ids[0] != ids[1]

"""schemathesis against `taskledger dev`'s own OpenAPI document, with a client key.

Every operation, with valid and invalid inputs the schema generates, bounded in
examples and time: no answer may be a 5xx or a status the document does not
list, responses must match their schemas, the server must log no ERROR, and
the log must audit clean afterwards. The miners' and validators' operations are
signed as dev's own reference miner and validator (schemathesis_hooks.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskledger.dev import free_port
from tests.support.dev_process import wait_healthy

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).with_name("schemathesis.toml")
DEV = (sys.executable, "-m", "taskledger.cli", "dev")
# Bounded: at most 10 examples an operation per phase, 40 s of fuzzing in all.
RUN = (
    *(str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG)),
    *("--no-color", "run", "--checks", "all", "--max-examples", "10", "--max-time", "40"),
    # One worker: CPython 3.11 builds ASTs with interpreter-wide recursion counters, and
    # hypothesis parsing lambdas in two threads at once raised "AST constructor recursion
    # depth mismatch" inside schemathesis (a SystemError, reported as a runtime error).
    *("--workers", "1", "--generation-database", "none", "--request-timeout", "10"),
)


def hooks_environment(data_dir: Path) -> dict[str, str]:
    """Where schemathesis_hooks.py finds itself and dev's miner and validator wallets."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    return {
        "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks",
        "PYTHONPATH": path,
        "TASKLEDGER_DATA_DIR": str(data_dir),
    }


OPERATORS = "^/(api/v1/admin/|dashboard)"


@dataclass(frozen=True)
class Run:
    total: int  # operations in the document
    tested: int  # operations this run selected and tested


def fuzz(base: str, key: str, selection: tuple[str, str], tmp_path: Path, data_dir: Path) -> Run:
    """One schemathesis run over the selected operations, with the key as Bearer."""
    run = subprocess.run(
        [
            *RUN,
            *selection,
            f"{base}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
        ],
        cwd=tmp_path,
        env={**os.environ, **hooks_environment(data_dir)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", run.stdout)
    tested = re.search(r"Tested: (\d+)", run.stdout)
    assert selected and tested, run.stdout[-3000:]
    assert selected[1] == tested[1], run.stdout[-3000:]  # every selected one was tested
    return Run(total=int(selected[2]), tested=int(tested[1]))


def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port("127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    server_log = tmp_path / "server.log"
    with server_log.open("wb") as log:
        server = subprocess.Popen(
            [*DEV, "--data-dir", str(data_dir), "--port", str(port)],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        wait_healthy(base)
        client_key = (data_dir / "api-key").read_text().strip()
        admin_key = (data_dir / "admin-key").read_text().strip()
        # The operators' operations with the admin key (a client key there is only a
        # 403), everything else with the client key; together, every operation.
        others = ("--exclude-path-regex", OPERATORS)
        clients = fuzz(base, client_key, others, tmp_path, data_dir)
        only = ("--include-path-regex", OPERATORS)
        operators = fuzz(base, admin_key, only, tmp_path, data_dir)
        assert clients.total == operators.total > 0
        assert clients.tested + operators.tested == clients.total
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=60)
    logged = server_log.read_text(errors="replace")
    assert " ERROR " not in logged and "Traceback" not in logged, logged[-4000:]
    audit = subprocess.run(
        [sys.executable, "-m", "taskledger.cli", "audit", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert audit.returncode == 0, audit.stdout[-3000:] + audit.stderr[-2000:]

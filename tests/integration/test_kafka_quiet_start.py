"""A healthy start of ``taskledger dev`` on Kafka reads clean: no ERROR, no aiokafka chatter.

A fresh topic prefix on the session's broker makes every topic new, as on a fresh broker: the
process creates them, waits for their leaders and joins its consumer group, and the operator
sees the banner and our own INFO lines only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from taskledger.dev import free_port
from tests.support.kafka_broker import KafkaBroker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

BANNER_END = "Stop with Ctrl-C."
READY = "processors.kafka.processor: owning partitions"


def _wait_for(output: Path, text: str, process: subprocess.Popen[bytes], seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen = output.read_text(encoding="utf-8", errors="replace")
        if text in seen:
            return seen
        if process.poll() is not None:
            raise AssertionError(f"taskledger dev exited ({process.returncode}):\n{seen}")
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} within {seconds}s:\n{seen}")


def test_dev_on_fresh_topics_logs_no_errors_and_no_aiokafka_info(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    prefix = f"quiet-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "TASKLEDGER_EVENT_LOG": f"kafka://{kafka.bootstrap}?prefix={prefix}"}
    output = tmp_path / "dev.out"
    command = [sys.executable, "-m", "taskledger.cli", "dev", "--data-dir", str(tmp_path / "d")]
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "--port", str(free_port()), "--miners", "1"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,  # one stream, in the order an operator reads it
            start_new_session=True,
        )
    try:
        _wait_for(output, BANNER_END, process, 90)
        seen = _wait_for(output, READY, process, 90)  # past the consumer group's join
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    lines = seen.splitlines()
    before_banner = lines[: lines.index(BANNER_END)]
    assert [line for line in lines if " ERROR " in line or "Traceback" in line] == []
    assert [line for line in before_banner if " INFO aiokafka" in line] == []
    assert [line for line in lines if " aiokafka." in line] == []
    assert any(line.startswith("taskledger is running at http://") for line in before_banner)

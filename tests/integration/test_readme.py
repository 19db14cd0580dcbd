"""The README's curl walk-through, run as written against a real `taskledger dev`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from miners.work.speech import synthesize
from taskledger.dev import free_port
from tests.support.dev_process import start_dev, wait_healthy
from tests.support.json_stream import documents

README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough() -> str:
    text = README.read_text()
    section = text.split("## Quick start with curl", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)  # type: ignore[union-attr]


def test_the_readme_walkthrough_works_as_written(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / ".taskledger"
    process = start_dev(data_dir, port)
    try:
        wait_healthy(base)
        (tmp_path / "speech.wav").write_bytes(synthesize("hello world this is a test"))
        script = walkthrough().replace("http://127.0.0.1:8080", base)
        lines = [line for line in script.splitlines() if not line.startswith("TASK=")]
        script = "\n".join(lines)
        env = {**os.environ, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        submitted = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script.split("curl -s  $API/task/")[0]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert submitted.returncode == 0, submitted.stderr
        answers = documents(submitted.stdout)
        assert [a["type"] for a in answers] == ["summarization", "tts", "transcription"]
        assert all(a["status"] == "PENDING" for a in answers)

        followups = "\n".join(
            line for line in script.splitlines() if line.startswith("curl -s") and "$TASK" in line
        )
        for answer in answers:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status = subprocess.run(
                    [
                        "bash",
                        "-c",
                        f"KEY=$(cat .taskledger/api-key); API={base}/api/v1; "
                        f"curl -s $API/task/{answer['task_id']}/status "
                        '-H "Authorization: Bearer $KEY"',
                    ],
                    cwd=tmp_path,
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                if json.loads(status.stdout)["status"] == "APPROVED":
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"{answer['task_id']} was not approved")
            done = subprocess.run(
                [
                    "bash",
                    "-euo",
                    "pipefail",
                    "-c",
                    f"KEY=$(cat .taskledger/api-key); API={base}/api/v1; TASK={answer['task_id']}\n"
                    + followups,
                ],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            assert b'"status": "APPROVED"' in done.stdout
            assert b"event: status" in done.stdout
            assert b'"events": [' in done.stdout
            # cancel comes last in the walk-through: too late for an approved task
            assert b'"code": "invalid_state"' in done.stdout
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    audit = subprocess.run(
        [sys.executable, "-m", "taskledger.cli", "audit", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert audit.returncode == 0, audit.stdout

"""The README's "Answers first" section, run as written against a real `taskledger dev`:
the held intakes and the provisional result with curl, the OpenAI client in five lines,
and `taskledger submit`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from miners.work.speech import synthesize
from taskledger.dev import free_port
from tests.support.dev_process import start_dev, wait_healthy
from tests.support.json_stream import documents

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"


def blocks(language: str) -> list[str]:
    text = README.read_text()
    section = text.split("## Answers first", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)


def test_the_answers_first_section_works_as_written(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_dev(tmp_path / ".taskledger", port)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "TASKLEDGER_PORT": str(port),
        "TASKLEDGER_HOST": "127.0.0.1",
    }
    try:
        wait_healthy(base)
        env["OPENAI_API_KEY"] = (tmp_path / ".taskledger" / "api-key").read_text().strip()
        (tmp_path / "speech.wav").write_bytes(synthesize("hello world this is a test"))
        (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])

        def run(kind: str, script: str) -> subprocess.CompletedProcess[str]:
            command = (
                ["bash", "-euo", "pipefail", "-c", script]
                if kind == "sh"
                else [sys.executable, "-c", script]
            )
            done = subprocess.run(
                command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, (script, done.stdout, done.stderr)
            return done

        curl, submits = (b.replace("http://127.0.0.1:8080", base) for b in blocks("sh"))
        answers = documents(run("sh", curl).stdout)
        held, provisional, approved = answers
        assert held["first_response"] is not None
        assert provisional["provisional"] in (True, False)
        assert provisional["task_id"] == held["task_id"]
        assert approved["status"] == "APPROVED" and approved["result"] is not None

        (python,) = (b.replace("http://127.0.0.1:8080", base) for b in blocks("python"))
        spoken = run("python", python)
        assert spoken.stdout.strip()  # the transcription's text
        assert (tmp_path / "hello.wav").read_bytes()[:4] == b"RIFF"

        (tmp_path / "hello.wav").unlink()
        output = run("sh", submits).stdout
        assert output.count("approved result") == 3
        assert (tmp_path / "hello.wav").read_bytes()[:4] == b"RIFF"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)

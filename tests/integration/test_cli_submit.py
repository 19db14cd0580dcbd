"""``taskledger submit`` as a user runs it, against a running server: plain lines when not
on a terminal, a live display on one, the first response then the approved result, and the
exit code of the task's end."""

from __future__ import annotations

import asyncio
import os
import pty
import sys
from pathlib import Path

import pytest

from tests.support.edge_system import API_KEYS, Edge, running_edge, wav_bytes

pytestmark = pytest.mark.slow


async def start_submit(
    edge: Edge, *args: str, key: str = API_KEYS["alice"]
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskledger.cli",
        "submit",
        *args,
        "--url",
        edge.url,
        "--key",
        key,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def read_all(fd: int) -> bytes:
    output = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side closed
            return output
        if not chunk:
            return output
        output += chunk


async def newest_task(edge: Edge) -> str:
    async with asyncio.timeout(20):
        while True:
            async with edge.session.get(
                f"{edge.url}/api/v1/tasks?limit=1", headers=edge.auth()
            ) as response:
                tasks = (await response.json())["tasks"]
            if tasks:
                return str(tasks[0]["task_id"])
            await asyncio.sleep(0.05)


async def evaluate_when_done(edge: Edge, score: float) -> str:
    task_id = await newest_task(edge)
    await edge.wait_for(task_id, "DONE", timeout=20)
    assert (await edge.evaluate(task_id, {edge.miners[0].identity.ss58: score})).status == 200
    return task_id


async def test_submit_waits_with_plain_lines_and_exits_0_on_approved(tmp_path: Path) -> None:
    async with running_edge(tmp_path, miners=("instant",)) as edge:
        process = await start_submit(edge, "summarization", "a text worth summarising", "--wait")
        task_id = await evaluate_when_done(edge, 0.9)
        out, err = await asyncio.wait_for(process.communicate(), 30)
        text = out.decode()
        assert process.returncode == 0, err.decode()
        assert "\x1b" not in text  # no terminal control codes off a terminal
        lines = text.splitlines()
        assert lines[0] == f"task {task_id}"
        statuses = [line.split()[1] for line in lines if line.startswith("status ")]
        # One line per change, from whatever the task was when followed, to APPROVED.
        assert statuses[0] in ("PENDING", "DISTRIBUTED", "DONE")
        assert statuses[-1] == "APPROVED" and len(statuses) >= 2
        first = next(i for i, line in enumerate(lines) if line.startswith("first response"))
        approved = next(i for i, line in enumerate(lines) if line.startswith("approved result"))
        assert first < approved
        assert "short" in lines[approved]  # the instant miner's summary

        # Without --wait: the id alone.
        process = await start_submit(edge, "summarization", "another text to sum up")
        out, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0
        assert out.decode().strip() == await newest_task(edge)


async def test_submit_exits_non_zero_on_failed_and_on_a_bad_key(tmp_path: Path) -> None:
    async with running_edge(tmp_path, miners=("instant",)) as edge:
        process = await start_submit(edge, "summarization", "a text that will fail", "--wait")
        await evaluate_when_done(edge, 0.0)
        out, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 1
        assert out.decode().splitlines()[-1].startswith("FAILED")

        process = await start_submit(edge, "summarization", "text", key="wrong-key")
        _, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 4
        assert "401 invalid_credentials" in err.decode()


async def test_submit_tts_writes_the_approved_audio(tmp_path: Path) -> None:
    audio = tmp_path / "out.wav"
    async with running_edge(tmp_path, miners=("instant",)) as edge:
        process = await start_submit(edge, "tts", "say this", "--wait", "-o", str(audio))
        await evaluate_when_done(edge, 0.8)
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err.decode()
        assert audio.read_bytes() == wav_bytes()
        assert f"written to {audio}" in out.decode()


async def test_submit_transcription_on_a_terminal_shows_a_live_display(tmp_path: Path) -> None:
    sound = tmp_path / "hello.wav"
    sound.write_bytes(wav_bytes())
    async with running_edge(tmp_path, miners=("instant",)) as edge:
        leader, follower = pty.openpty()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "taskledger.cli",
            "submit",
            "transcription",
            str(sound),
            "--wait",
            "--url",
            edge.url,
            "--key",
            API_KEYS["alice"],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=follower,
            stderr=follower,
            env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"},
        )
        os.close(follower)
        # Read as it is written: a full terminal buffer would block the display.
        reading = asyncio.create_task(asyncio.to_thread(read_all, leader))
        try:
            await evaluate_when_done(edge, 0.9)
            await asyncio.wait_for(process.wait(), 30)
            output = await asyncio.wait_for(reading, 10)
        finally:
            if process.returncode is None:
                process.kill()  # the reader then sees the terminal close
                await process.wait()
            await asyncio.wait_for(reading, 10)
            os.close(leader)
        assert process.returncode == 0
        text = output.decode(errors="replace")
        assert "\x1b[" in text  # the live display draws with control codes
        assert "first response" in text and "hello world" in text
        assert "approved result" in text

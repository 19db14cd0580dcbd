"""``taskledger submit``: a job from the command line, followed live if asked.

Without ``--wait`` it prints the new task's id. With ``--wait`` it follows the task's SSE
stream to its terminal status: on a terminal, a live display (``rich``); otherwise plain
lines, one per status change, with no control codes. The first response is printed as
soon as it exists, then the approved result (``-o FILE`` writes audio). Exit codes: 0
APPROVED (or submitted, without ``--wait``), 1 FAILED, 3 CANCELLED, 4 the proxy refused
the request or could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final, TextIO

import aiohttp
import orjson

from taskledger.settings import from_environment

EXIT_CODES: Final = {"APPROVED": 0, "FAILED": 1, "CANCELLED": 3}
REFUSED: Final = 4
TERMINAL: Final = frozenset(EXIT_CODES)


class Refused(Exception):
    """The proxy said no (or was not there): the message says why."""


def add_submit_parser(commands: Any) -> None:
    submit = commands.add_parser(
        "submit",
        help="submit a job (and follow it with --wait)",
        description="Submit a job and print its id; with --wait, follow it to its end. "
        "Exit 0 on APPROVED, 1 on FAILED, 3 on CANCELLED, 4 if the proxy refused.",
    )
    submit.add_argument("type", choices=("summarization", "tts", "transcription"))
    submit.add_argument(
        "input",
        nargs="?",
        help="the text (or a file holding it) for summarization and tts, the audio file for "
        "transcription; '-' or nothing: read standard input",
    )
    submit.add_argument("--wait", action="store_true", help="follow the task to its end")
    submit.add_argument("--url", help="default: http://$TASKLEDGER_HOST:$TASKLEDGER_PORT")
    submit.add_argument("--key", help="default: $TASKLEDGER_API_KEY or <data dir>/api-key")
    submit.add_argument("--data-dir", type=Path, help="where to find api-key")
    submit.add_argument("-o", "--output", type=Path, help="write the audio (tts) here")
    submit.set_defaults(handler=run_submit)


def run_submit(arguments: argparse.Namespace) -> int:
    try:
        return asyncio.run(submit(arguments, sys.stdout))
    except Refused as refused:
        print(f"taskledger submit: {refused}", file=sys.stderr)
        return REFUSED


def _defaults(arguments: argparse.Namespace) -> tuple[str, str]:
    settings = from_environment().with_overrides(data_dir=arguments.data_dir)
    url = (arguments.url or f"http://{settings.host}:{settings.port}").rstrip("/")
    key = arguments.key or os.environ.get("TASKLEDGER_API_KEY")
    if not key:
        path = settings.data_dir / "api-key"
        if not path.is_file():
            raise Refused(f"no API key: give --key, set TASKLEDGER_API_KEY or create {path}")
        key = path.read_text().strip()
    return url, key


def _read_input(arguments: argparse.Namespace) -> bytes:
    source = arguments.input
    if source in (None, "-"):
        return sys.stdin.buffer.read()
    path = Path(source)
    if arguments.type == "transcription":
        if not path.is_file():
            raise Refused(f"no audio file {source}")
        return path.read_bytes()
    return path.read_bytes() if path.is_file() else str(source).encode()


async def _error(response: aiohttp.ClientResponse) -> Refused:
    try:
        error = (await response.json(content_type=None))["error"]
        return Refused(f"{response.status} {error['code']}: {error['message']}")
    except (ValueError, KeyError, TypeError, aiohttp.ClientError):
        return Refused(f"{response.status} {response.reason}")


async def _create(
    session: aiohttp.ClientSession, url: str, task_type: str, data: bytes
) -> dict[str, Any]:
    if task_type == "transcription":
        form = aiohttp.FormData()
        form.add_field("file", data, filename="audio", content_type="application/octet-stream")
        body: dict[str, Any] = {"data": form}
    else:
        body = {"json": {"text": data.decode("utf-8", "replace").strip()}}
    async with session.post(f"{url}/api/v1/{task_type}", **body) as response:
        if response.status != 202:
            raise await _error(response)
        accepted: dict[str, Any] = await response.json()
        return accepted


async def _statuses(
    session: aiohttp.ClientSession, url: str, task_id: str
) -> AsyncIterator[dict[str, Any]]:
    """The task's status documents from its SSE stream, reconnecting until it is terminal."""
    last = -1
    while True:
        async with session.get(
            f"{url}/api/v1/task/{task_id}/stream", timeout=aiohttp.ClientTimeout(total=None)
        ) as response:
            if response.status != 200:
                raise await _error(response)
            async for line in response.content:
                if line.startswith(b"data: "):
                    document: dict[str, Any] = orjson.loads(line[6:])
                    if document["version"] > last:
                        last = document["version"]
                        yield document
                        if document["status"] in TERMINAL:
                            return
        await asyncio.sleep(0.5)  # the stream ended early (a restart): follow it again


def _text_of(result: dict[str, Any]) -> str:
    for field in ("text", "summary"):
        if isinstance(result.get(field), str):
            return str(result[field])
    return orjson.dumps(result).decode()


class Display:
    """Where progress goes: plain lines (not a terminal) or a live display (``rich``)."""

    def __init__(self, out: TextIO, live: bool) -> None:
        self.out = out
        self._status: Any = None
        self._console: Any = None
        if live:
            from rich.console import Console

            self._console = Console(file=out)
            self._status = self._console.status("submitting…")
            self._status.start()

    def progress(self, document: dict[str, Any]) -> None:
        counts = document["progress"]
        line = (
            f"{document['status']} {counts['responded']}/{counts['assigned']} responded"
            f", {counts['failed']} failed"
        )
        if self._status is not None:
            self._status.update(f"[bold]{document['task_id']}[/] {line}")
        else:
            print(f"status {line}", file=self.out, flush=True)

    def say(self, text: str) -> None:
        if self._console is not None:
            self._console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.out, flush=True)

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()


async def follow(
    session: aiohttp.ClientSession,
    url: str,
    task_id: str,
    display: Display,
    output: Path | None,
) -> int:
    first_shown = False
    status = None
    last_status: tuple[str, int, int] | None = None
    async for document in _statuses(session, url, task_id):
        status = document["status"]
        counts = document["progress"]
        key = (status, counts["responded"], counts["failed"])
        if key != last_status:
            display.progress(document)
            last_status = key
        first = document.get("first_response")
        if first is not None and not first_shown:
            first_shown = True
            latency = first.get("latency_ms")
            shown = (
                f"{url}{first['result']['audio']}"
                if "audio" in first["result"]
                else _text_of(first["result"])
            )
            display.say(f"first response ({first['miner_hotkey']}, {latency} ms): {shown}")
    if status == "APPROVED":
        await _approved(session, url, task_id, display, output)
    elif status is not None:
        document_error = document.get("error") or {}
        display.say(f"{status}: {document_error.get('message', '')}".rstrip(": "))
    return EXIT_CODES.get(status or "", REFUSED)


async def _approved(
    session: aiohttp.ClientSession,
    url: str,
    task_id: str,
    display: Display,
    output: Path | None,
) -> None:
    path = f"/api/v1/task/{task_id}/result"
    async with session.get(f"{url}{path}?provisional=true") as response:
        if response.status != 200:
            raise await _error(response)
        if response.content_type == "audio/wav":
            data = await response.read()
            if output is not None:
                output.write_bytes(data)
                display.say(f"approved result: {len(data)} bytes of audio written to {output}")
            else:
                display.say(f"approved result: {url}{path} (audio; -o FILE writes it)")
            return
        body = await response.json()
    display.say(f"approved result ({body['miner_hotkey']}): {_text_of(body['result'])}")


async def submit(
    arguments: argparse.Namespace, out: TextIO, *, live: Callable[[], bool] | None = None
) -> int:
    url, key = _defaults(arguments)
    data = _read_input(arguments)
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            accepted = await _create(session, url, arguments.type, data)
            task_id = str(accepted["task_id"])
            if not arguments.wait:
                print(task_id, file=out, flush=True)
                return 0
            display = Display(out, live() if live else out.isatty())
            display.say(f"task {task_id}")
            try:
                return await follow(session, url, task_id, display, arguments.output)
            finally:
                display.close()
    except aiohttp.ClientError as error:
        raise Refused(f"cannot reach {url}: {error}") from None

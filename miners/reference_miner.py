"""The reference miner: speaks the miner protocol and does real work.

Summaries are extractive, transcription is pocketsphinx's English model,
speech is espeak-ng. Knobs add latency, errors and silence so that tests and
operators can watch failover happen.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from bittensor.http_auth import NonceStore

from miners.btauth import AuthFailed, verify_request
from miners.client import MinerClient, PeerUnreachable
from miners.directory import CAPABILITIES
from miners.identity import Identity
from miners.receipts import ReceiptBook

log = logging.getLogger(__name__)

MAX_TASK_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class MinerKnobs:
    latency_seconds: float = 0.0
    error_rate: float = 0.0  # answer 500 to this share of tasks
    silence_rate: float = 0.0  # accept this share of tasks (202) and never answer
    deferred: bool = False  # answer 202 at once and post the result later
    garbage: bool = False  # answer with a result of the wrong shape


class WorkRefused(Exception):
    """The input cannot be worked on (unsupported audio, unknown voice, …)."""


Work = Callable[[dict[str, Any], "ReferenceMiner"], Awaitable[dict[str, Any]]]


async def _summarize(payload: dict[str, Any], miner: ReferenceMiner) -> dict[str, Any]:
    from miners.work.summarize import summarize

    task_input = payload.get("input") or {}
    text = task_input.get("text")
    if not isinstance(text, str):
        raise WorkRefused("summarization needs input.text")
    max_words = task_input.get("max_words")
    if max_words is not None and (not isinstance(max_words, int) or max_words < 1):
        raise WorkRefused("input.max_words must be a positive whole number")
    return {"summary": summarize(text, max_words)}


async def _transcribe(payload: dict[str, Any], miner: ReferenceMiner) -> dict[str, Any]:
    from miners.work.transcribe import transcribe_async

    task_input = payload.get("input") or {}
    audio = await miner.fetch_input(payload)
    content_type = str(task_input.get("content_type", "audio/wav"))
    try:
        text = await transcribe_async(audio, content_type, str(task_input.get("language", "en")))
    except ValueError as error:
        raise WorkRefused(str(error)) from None
    return {"text": text}


async def _speak(payload: dict[str, Any], miner: ReferenceMiner) -> dict[str, Any]:
    from miners.work.speech import synthesize_async

    task_input = payload.get("input") or {}
    text = task_input.get("text")
    if not isinstance(text, str):
        raise WorkRefused("tts needs input.text")
    try:
        wav = await synthesize_async(text, task_input.get("voice"))
    except ValueError as error:
        raise WorkRefused(str(error)) from None
    return {"audio_wav_base64": base64.b64encode(wav).decode()}


WORK: dict[str, Work] = {"summarization": _summarize, "transcription": _transcribe, "tts": _speak}


class ReferenceMiner:
    def __init__(
        self,
        identity: Identity,
        client: MinerClient,
        nonce_store: NonceStore,
        *,
        capabilities: frozenset[str] = CAPABILITIES,
        knobs: MinerKnobs | None = None,
        proxy_hotkeys: frozenset[str] | None = None,
        rng: random.Random | None = None,
        receipts: ReceiptBook | None = None,
    ) -> None:
        self.identity = identity
        self.capabilities = capabilities
        self.knobs = knobs or MinerKnobs()
        self._client = client
        self._nonce_store = nonce_store
        self._proxy_hotkeys = proxy_hotkeys
        self._rng = rng or random.Random(secrets.randbits(64))
        self.receipts = receipts
        self._background: set[asyncio.Task[None]] = set()
        self.handled = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_TASK_BYTES)
        app.router.add_post("/task", self._task)
        app.router.add_get("/health", self._health)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"hotkey": self.identity.ss58, "capabilities": sorted(self.capabilities)}
        )

    async def _task(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            proxy = await verify_request(
                request, body, self_ss58=self.identity.ss58, nonce_store=self._nonce_store
            )
        except AuthFailed as failure:
            return _error(401, failure.code, failure.message)
        if self._proxy_hotkeys is not None and proxy not in self._proxy_hotkeys:
            return _error(403, "unknown_proxy", "this miner does not work for that hotkey")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(400, "invalid_json", "the body is not JSON")
        task_type = payload.get("type") if isinstance(payload, dict) else None
        if task_type not in self.capabilities or task_type not in WORK:
            return _error(400, "unsupported_type", f"this miner does not do {task_type!r}")
        # Who sent the work is who receives the input fetch and the late answer.
        payload["_proxy"] = proxy
        self.handled += 1
        roll = self._rng.random()
        if roll < self.knobs.error_rate:
            return _error(500, "miner_error", "the reference miner was told to fail")
        if roll < self.knobs.error_rate + self.knobs.silence_rate:
            return web.json_response({"accepted": True}, status=202)
        if self.knobs.deferred:
            task = asyncio.get_running_loop().create_task(self._answer_later(payload, proxy))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return web.json_response({"accepted": True}, status=202)
        try:
            result = await self._work(payload)
        except WorkRefused as refused:
            return _error(422, "cannot_work", str(refused))
        return web.json_response({"result": result})

    async def _work(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self.knobs.latency_seconds:
            await asyncio.sleep(self.knobs.latency_seconds)
        if self.knobs.garbage:
            return {"nonsense": True}
        return await WORK[payload["type"]](payload, self)

    async def fetch_input(self, payload: dict[str, Any]) -> bytes:
        url = payload.get("input_url")
        if not isinstance(url, str):
            raise WorkRefused("the task has no input_url")
        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc}"
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        proxy = self._proxy_for(payload)
        try:
            response = await self._client.get_signed(base, target, receiver_ss58=proxy)
        except PeerUnreachable as error:
            raise WorkRefused(f"could not fetch the input: {error}") from None
        if response.status != 200:
            raise WorkRefused(f"could not fetch the input: HTTP {response.status}")
        return response.body

    def _proxy_for(self, payload: dict[str, Any]) -> str:
        return str(payload.get("_proxy", ""))

    async def _answer_later(self, payload: dict[str, Any], proxy: str) -> None:
        try:
            result = await self._work(payload)
        except WorkRefused as refused:
            log.info("task %s refused: %s", payload.get("task_id"), refused)
            return
        response_url = urlsplit(str(payload["response_url"]))
        base = f"{response_url.scheme}://{response_url.netloc}"
        if "audio_wav_base64" in result:
            wav = base64.b64decode(result["audio_wav_base64"])
            body, content_type = _multipart(str(payload["task_id"]), wav)
        else:
            body = orjson.dumps({"task_id": payload["task_id"], "result": result})
            content_type = "application/json"
        try:
            answer = await self._client.post_signed(
                base, response_url.path, body, receiver_ss58=proxy, content_type=content_type
            )
        except PeerUnreachable as error:
            log.warning("could not post the response to %s: %s", payload["task_id"], error)
            return
        kept = (
            self.receipts.keep(answer.json.get("receipt"), proxy)
            if self.receipts is not None and answer.status == 200 and isinstance(answer.json, dict)
            else True
        )
        if kept is None:
            log.warning("the proxy's answer for %s had no valid receipt", payload["task_id"])

    async def _cleanup(self, app: web.Application) -> None:
        for task in list(self._background):
            task.cancel()


def _multipart(task_id: str, wav: bytes) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="task_id"\r\n\r\n{task_id}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="speech.wav"'
        "\r\nContent-Type: audio/wav\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + wav + tail, f"multipart/form-data; boundary={boundary}"


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)

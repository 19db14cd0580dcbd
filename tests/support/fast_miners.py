"""In-test miners: small aiohttp servers speaking the miner protocol, with behaviours."""

from __future__ import annotations

import asyncio
import base64
import io
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from miners.directory import MinerInfo
from taskledger.dev import free_port

Behaviour = Callable[[dict[str, Any]], Awaitable[web.Response]]


def tiny_wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x01" * int(seconds * rate))
    return buffer.getvalue()


def result_for(payload: dict[str, Any]) -> dict[str, Any]:
    task_type = payload["type"]
    if task_type == "summarization":
        return {"summary": str(payload["input"]["text"])[:40]}
    if task_type == "transcription":
        return {"text": "hello world"}
    return {"audio_wav_base64": base64.b64encode(tiny_wav()).decode()}


async def answer(payload: dict[str, Any]) -> web.Response:
    return web.json_response({"result": result_for(payload)})


async def refuse(payload: dict[str, Any]) -> web.Response:
    return web.json_response({"error": "boom"}, status=500)


async def silent(payload: dict[str, Any]) -> web.Response:
    return web.json_response({"accepted": True}, status=202)


async def garbage(payload: dict[str, Any]) -> web.Response:
    return web.json_response({"result": {"nonsense": 1}})


def slow(seconds: float) -> Behaviour:
    async def behave(payload: dict[str, Any]) -> web.Response:
        await asyncio.sleep(seconds)
        return await answer(payload)

    return behave


@dataclass
class FakeMiner:
    hotkey: str
    behaviour: Behaviour
    capabilities: frozenset[str] = frozenset({"summarization", "transcription", "tts"})
    received: list[dict[str, Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    @property
    def info(self) -> MinerInfo:
        return MinerInfo(self.hotkey, f"http://127.0.0.1:{self.port}", self.capabilities)

    async def start(self) -> FakeMiner:
        async def task(request: web.Request) -> web.Response:
            payload = await request.json()
            self.received.append(payload)
            return await self.behaviour(payload)

        app = web.Application()
        app.router.add_post("/task", task)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

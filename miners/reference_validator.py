"""The reference validator: fetches DONE tasks, scores the responses honestly, posts scores."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

from miners.client import MinerClient, PeerUnreachable
from miners.identity import Identity

log = logging.getLogger(__name__)


class ReferenceValidator:
    def __init__(
        self,
        identity: Identity,
        client: MinerClient,
        proxy_url: str,
        proxy_hotkey: str,
        *,
        batch: int = 50,
        concurrency: int = 16,
    ) -> None:
        self.identity = identity
        self._client = client
        self._proxy_url = proxy_url.rstrip("/")
        self._proxy_hotkey = proxy_hotkey
        self._batch = batch
        self._concurrency = max(1, concurrency)
        # The proxy lists a task as waiting until its read model has seen the
        # evaluation, a little after the answer: remember what was just scored.
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._recent_size = max(1000, 4 * batch)
        self.evaluated = 0

    async def run(self, interval: float = 0.5) -> None:
        while True:
            try:
                done = await self.run_once()
            except PeerUnreachable as error:
                log.warning("proxy unreachable: %s", error)
                done = 0
            if not done:
                await asyncio.sleep(interval)

    async def run_once(self) -> int:
        """Evaluate one batch of waiting tasks; returns how many were evaluated."""
        response = await self._client.get_signed(
            self._proxy_url,
            f"/api/v1/validator/tasks?limit={self._batch}",
            receiver_ss58=self._proxy_hotkey,
        )
        if response.status != 200 or not isinstance(response.json, dict):
            log.warning("validator tasks: HTTP %s %s", response.status, response.body[:200])
            return 0
        tasks = [
            task for task in response.json.get("tasks", []) if task["task_id"] not in self._recent
        ]
        # Several evaluations in flight at once: the proxy commits them together.
        slots = asyncio.Semaphore(self._concurrency)
        outcomes = await asyncio.gather(*(self._evaluate(task, slots) for task in tasks))
        evaluated = sum(outcomes)
        self.evaluated += evaluated
        return evaluated

    async def _evaluate(self, task: dict[str, Any], slots: asyncio.Semaphore) -> bool:
        async with slots:
            scores = await self.score(task)
            reply = await self._client.post_signed(
                self._proxy_url,
                "/api/v1/validator/evaluation",
                {"task_id": task["task_id"], "scores": scores},
                receiver_ss58=self._proxy_hotkey,
            )
        if reply.status in (200, 409):  # 409: not DONE any more (another validator, say)
            self._recent[task["task_id"]] = None
            while len(self._recent) > self._recent_size:
                self._recent.popitem(last=False)
        else:
            log.warning("evaluation of %s: HTTP %s", task["task_id"], reply.status)
        return reply.status == 200

    async def score(self, task: dict[str, Any]) -> dict[str, float]:
        from miners.scoring import score_speech, score_summary, score_transcriptions

        responses = task.get("responses", [])
        task_input = task.get("input") or {}
        if task.get("type") == "summarization":
            source = str(task_input.get("text", ""))
            limit = task_input.get("max_words")
            return {
                r["miner_hotkey"]: score_summary(source, str(r["result"].get("summary", "")), limit)
                for r in responses
            }
        if task.get("type") == "transcription":
            return score_transcriptions(
                {r["miner_hotkey"]: str(r["result"].get("text", "")) for r in responses}
            )
        scores = {}
        for r in responses:
            audio = await self._fetch(r.get("result_url"))
            scores[r["miner_hotkey"]] = score_speech(str(task_input.get("text", "")), audio)
        return scores

    async def _fetch(self, url: Any) -> bytes:
        if not isinstance(url, str):
            return b""
        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc}" if parts.netloc else self._proxy_url
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            response = await self._client.get_signed(base, target, receiver_ss58=self._proxy_hotkey)
        except PeerUnreachable:
            return b""
        return response.body if response.status == 200 else b""

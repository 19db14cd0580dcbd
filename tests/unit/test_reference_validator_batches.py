"""The reference validator: a batch of evaluations in flight at once, each task once."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from miners.client import SignedResponse
from miners.identity import Identity
from miners.reference_validator import ReferenceValidator


class ProxyStandIn:
    """Lists the same DONE tasks until told otherwise, as a lagging read model would."""

    def __init__(self, task_ids: list[str]) -> None:
        self.task_ids = task_ids
        self.posted: Counter[str] = Counter()
        self.in_flight = 0
        self.most_in_flight = 0

    async def get_signed(self, base_url: str, path: str, **_: Any) -> SignedResponse:
        tasks = [
            {
                "task_id": task_id,
                "type": "summarization",
                "input": {"text": "One. Two. Three."},
                "input_url": None,
                "responses": [{"miner_hotkey": "5M", "result": {"summary": "One."}}],
            }
            for task_id in self.task_ids
        ]
        return SignedResponse(200, {"tasks": tasks}, b"")

    async def post_signed(self, base_url: str, path: str, body: Any, **_: Any) -> SignedResponse:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        self.posted[body["task_id"]] += 1
        return SignedResponse(200, {"status": "APPROVED"}, b"")


async def test_the_validator_posts_a_batch_at_once_and_each_task_once() -> None:
    proxy = ProxyStandIn([f"task-{n}" for n in range(10)])
    validator = ReferenceValidator(
        Identity.from_uri("//TaskledgerTestValidator"),
        proxy,  # type: ignore[arg-type]
        "http://proxy",
        "5Proxy",
        batch=10,
        concurrency=4,
    )
    assert await validator.run_once() == 10
    assert await validator.run_once() == 0  # still listed: already scored
    assert set(proxy.posted.values()) == {1}
    assert proxy.most_in_flight == 4

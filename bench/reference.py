"""The same workload on the Python `eventsourcing` library's SQLite backend, for comparison.

One aggregate per task, saved after each command, as taskledger appends after
each command. The library has no projection in this run, so its figure is
for appending alone; taskledger's includes the read-model projection.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from bench.workload import EVENTS_PER_TASK


class Task(Aggregate):
    @event("Created")
    def __init__(self, task_type: str, priority: str, input: dict[str, Any], client: str) -> None:
        self.task_type = task_type
        self.priority = priority
        self.input = input
        self.client = client
        self.status = "PENDING"
        self.responses: dict[str, dict[str, Any]] = {}
        self.miners: list[str] = []

    @event("Distributed")
    def distribute(self, miners: list[str]) -> None:
        self.miners = list(miners)
        self.status = "DISTRIBUTED"

    @event("Responded")
    def respond(self, hotkey: str, result: dict[str, Any], latency_ms: float) -> None:
        self.responses[hotkey] = result

    @event("Completed")
    def complete(self) -> None:
        self.status = "DONE"

    @event("Evaluated")
    def evaluate(self, scores: dict[str, float]) -> None:
        self.scores = scores

    @event("Approved")
    def approve(self, hotkey: str) -> None:
        self.status = "APPROVED"
        self.winner = hotkey


class Tasks(Application[Any]):
    pass


def run_reference(tasks: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="eventsourcing-bench-") as directory:
        app = Tasks(
            env={
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(Path(directory) / "es.db"),
            }
        )
        started = time.perf_counter()
        for index in range(tasks):
            text = f"Summarize document {index}. It has a few sentences. They say little."
            task = Task("summarization", "normal", {"text": text, "max_words": 20}, "bench")
            app.save(task)
            miners = [f"5Miner{(index + offset) % 12:02d}" for offset in range(3)]
            task.distribute(miners)
            app.save(task)
            for rank, hotkey in enumerate(miners):
                task.respond(hotkey, {"summary": f"Document {index} says little."}, 10.0 + rank)
                if rank == len(miners) - 1:
                    task.complete()
                app.save(task)
            task.evaluate({hotkey: 0.5 for hotkey in miners})
            task.approve(miners[0])
            app.save(task)
        elapsed = time.perf_counter() - started
        app.close()
    events = tasks * EVENTS_PER_TASK
    return {
        "tasks": tasks,
        "events": events,
        "seconds": elapsed,
        "events_per_second": events / elapsed,
    }

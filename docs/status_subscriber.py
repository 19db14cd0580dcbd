"""Follow task status from Kafka, the way a service outside taskledger would.

taskledger's command processor publishes each task's status document to the compacted
topic ``<prefix>.status``, keyed by task id, in the same Kafka transaction as the task's
events. Any service can follow it with a plain Kafka consumer and nothing of taskledger:

- ``isolation_level="read_committed"``: only changes whose events were committed;
- the document's ``version`` (the sequence of the task's last event) orders one task's
  updates, and lets a follower drop a repeat should a publisher ever send one twice;
- the topic is compacted, so a new follower reading from the beginning gets at least
  the latest document of every task, without the whole history.

Run it::

    python docs/status_subscriber.py --bootstrap 127.0.0.1:9092 --task 7f0c... --task 91ab...

It prints one JSON line per status change and, given ``--task``, exits once every named
task has reached a terminal status (exit code 1 if ``--timeout`` passes first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer

TERMINAL = frozenset({"APPROVED", "FAILED", "CANCELLED"})


async def status_changes(bootstrap: str, prefix: str) -> AsyncIterator[dict[str, Any]]:
    """Every task's status documents, from the beginning of the topic, each version once."""
    consumer = AIOKafkaConsumer(
        f"{prefix}.status",
        bootstrap_servers=bootstrap,
        group_id=None,  # every follower reads everything; add a group to share the work
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    seen: dict[str, int] = {}
    try:
        async for record in consumer:
            if record.value is None:
                continue  # a tombstone: the task was removed from the topic
            document: dict[str, Any] = json.loads(record.value)
            task_id = document["task_id"]
            if document["version"] <= seen.get(task_id, 0):
                continue
            seen[task_id] = document["version"]
            yield document
    finally:
        await consumer.stop()


async def follow(bootstrap: str, prefix: str, tasks: set[str], timeout: float) -> int:
    waiting = set(tasks)
    try:
        async with asyncio.timeout(timeout):
            async for document in status_changes(bootstrap, prefix):
                if tasks and document["task_id"] not in tasks:
                    continue
                line = {key: document[key] for key in ("task_id", "status", "version")}
                print(json.dumps(line), flush=True)
                if document["status"] in TERMINAL:
                    waiting.discard(document["task_id"])
                    if tasks and not waiting:
                        return 0
    except TimeoutError:
        print(f"still waiting for {sorted(waiting)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--prefix", default="taskledger", help="taskledger's topic prefix")
    parser.add_argument("--task", action="append", default=[], help="follow only these tasks")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after seconds")
    args = parser.parse_args(argv)
    return asyncio.run(follow(args.bootstrap, args.prefix, set(args.task), args.timeout))


if __name__ == "__main__":
    sys.exit(main())

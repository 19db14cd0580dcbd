"""How taskledger's processes use Python's cycle collector.

Deciding, sealing, folding and auditing make many short-lived objects and few reference
cycles: a larger young generation runs the collector far less often. Once a server has
started, everything imported and wired so far lives as long as the process; frozen, it is
no longer scanned by every full collection (those took 80 to 230 ms in the processors
process before, mostly walking objects made by imports).
"""

from __future__ import annotations

import gc


def tune_collector() -> None:
    gc.set_threshold(10_000, 50, 50)


def freeze_startup_objects() -> None:
    gc.collect()
    gc.freeze()

"""Event ids stay unique when a process that has already made some forks (pre-fork servers,
``multiprocessing`` with the default start method on Linux)."""

from __future__ import annotations

import os

import pytest

from processors.commands import new_id


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_repeat_its_parents_event_ids() -> None:
    new_id()  # a running process has made ids before it forks
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        try:
            os.write(write_end, ",".join(new_id() for _ in range(3)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        child = set(pipe.read().decode().split(","))
    parent = {new_id() for _ in range(3)}
    assert len(child) == 3
    assert not child & parent

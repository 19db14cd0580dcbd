"""Google's Firestore emulator (the ``google-cloud-cli-firestore-emulator`` package) for tests.

The emulator is a Java server started by a shell script; both run in their own
process group so that ``stop()`` ends the JVM too. Typical use::

    emulator = FirestoreEmulator.start(tmp_path)
    client = emulator.client("my-project")     # an AsyncClient bound to the emulator
    emulator.reset("my-project")               # delete every document
    emulator.stop()

``FIRESTORE_EMULATOR_HOST`` is the only way google-cloud-firestore reaches an
emulator (plain gRPC, no TLS): the client reads it once, in its constructor.
``client()`` sets it for that moment only, so it never leaks into other tests.
Do not call ``recursive_delete`` on such a client: its BulkWriter builds a
synchronous copy of the client later, from the environment as it is then, and
silently talks to the real service.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from google.cloud import firestore

from taskledger.dev import free_port

EMULATOR_DIR = Path("/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator")
EMULATOR_SCRIPT = EMULATOR_DIR / "cloud_firestore_emulator"
HOST = "127.0.0.1"


class FirestoreEmulatorError(RuntimeError):
    """The emulator is missing, or did not start or stop."""


class FirestoreEmulator:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self._process: subprocess.Popen[bytes] | None = process
        self.port = port
        self.log_path = log_path
        self.started_in = 0.0

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    @classmethod
    def start(cls, workdir: Path, timeout: float = 60.0) -> FirestoreEmulator:
        if not EMULATOR_SCRIPT.exists():
            raise FirestoreEmulatorError(
                f"the Firestore emulator is missing: {EMULATOR_SCRIPT} does not exist. It comes "
                "with the Debian package google-cloud-cli-firestore-emulator (see "
                "recipes/emulators.md); the Firestore tests cannot run without it."
            )
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log_path = workdir / "firestore-emulator.log"
        started = time.monotonic()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(EMULATOR_SCRIPT), "start", f"--host={HOST}", f"--port={port}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=workdir,
            )
        emulator = cls(process, port, log_path)
        emulator._wait_until_ready(timeout)
        emulator.started_in = time.monotonic() - started
        return emulator

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = self._process.returncode if self._process else None
                self.stop()
                raise FirestoreEmulatorError(
                    f"the Firestore emulator exited with code {code} while starting:\n"
                    f"{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"http://{self.host}/", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise FirestoreEmulatorError(
            f"the Firestore emulator did not answer on {self.host} within {timeout:.0f}s:\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-limit:].decode(errors="replace")
        except OSError:
            return "(no log)"

    def client(self, project: str) -> firestore.AsyncClient:
        with mock.patch.dict(os.environ, {"FIRESTORE_EMULATOR_HOST": self.host}):
            return firestore.AsyncClient(project=project)

    def reset(self, project: str) -> None:
        """Delete every document of ``project``'s default database."""
        request = urllib.request.Request(
            f"http://{self.host}/emulator/v1/projects/{project}/databases/(default)/documents",
            method="DELETE",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 200:
                raise FirestoreEmulatorError(f"reset answered {response.status}")

    def rss_mib(self) -> float:
        """Resident memory of the emulator's process group (the script and its JVM)."""
        if self._process is None:
            return 0.0
        return sum(rss for _, rss in _group_members(self._process.pid)) / 1024

    def stop(self) -> None:
        """End the script and its JVM: SIGTERM to the group, SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is None:
            return
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                process.poll()  # reap the script, or it stays in the group as a zombie
                if not _group_members(process.pid):
                    process.wait()
                    return
                time.sleep(0.05)
        process.wait()


def _group_members(group: int) -> list[tuple[int, int]]:
    """(pid, resident KiB) of the live, non-zombie processes in a process group."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z" or int(fields[2]) != group:
                continue
            rss_pages = int((stat.parent / "statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        members.append((int(stat.parent.name), rss_pages * os.sysconf("SC_PAGE_SIZE") // 1024))
    return members


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirestoreEmulator]:
    emulator = FirestoreEmulator.start(tmp_path_factory.mktemp("firestore"))
    try:
        yield emulator
    finally:
        emulator.stop()

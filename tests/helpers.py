"""Start real budgetd processes for end-to-end tests."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent


def script(name: str) -> str:
    """An installed console script of this environment (budgetd, budgetctl, hadolint)."""
    return str(Path(sys.executable).parent / name)


# Ports the kernel never hands out on its own (below Linux's ephemeral range,
# 32768 and up): no outgoing connection of a test running alongside can take
# one between its choice here and its use.
UNASSIGNED_PORTS = (10_000, 32_767)


def free_port() -> int:
    """A port nothing listens on, among the ports the kernel does not assign."""
    return free_port_pair(offset=0)


def free_port_pair(offset: int = 10_000) -> int:
    """A free port p with p + offset free too (a Redis Cluster node's bus port),
    both among the ports the kernel does not assign."""
    low, high = UNASSIGNED_PORTS
    for _ in range(200):
        port = random.randint(low, high - offset)
        if _bindable(port) and _bindable(port + offset):
            return port
    raise RuntimeError("no free port")


def _bindable(port: int) -> bool:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def health_status(address: str, timeout: float = 1.0, tls=None) -> int | None:
    channel = grpc.secure_channel(address, tls.credentials()) if tls else grpc.insecure_channel(address)
    with channel:
        try:
            return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout).status
        except grpc.RpcError:
            return None


class DaemonProcess:
    """``budgetd --config FILE`` in a temp dir, on a free port."""

    def __init__(self, workdir: Path, config_body: str, env: dict[str, str] | None = None,
                 store_url: str | None = None, server_extra: str = "", tls=None,
                 python: str = sys.executable) -> None:
        self.workdir = workdir
        self.python = python  # another checkout's interpreter: bench/side_by_side.py
        self.tls = tls  # a budgetd_client.Tls for the readiness check of a TLS port
        self.server_extra = server_extra  # more keys under server:, e.g. "tls: {...}"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.config_path = workdir / "budgets.yaml"
        self.db_path = workdir / "budgetd.db"
        self.store_url = store_url or f"sqlite://{self.db_path}"
        self.write_config(config_body)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "budgetd.log"

    def write_config(self, body: str) -> None:
        header = f"""
        server:
          listen: "{self.address}"
          shutdown_grace_seconds: 5
          {self.server_extra}
        store:
          url: "{self.store_url}"
        """
        self.config_path.write_text(textwrap.dedent(header) + textwrap.dedent(body))

    def start(self, timeout: float = 20.0) -> DaemonProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [self.python, "-m", "budgetd", "--config", str(self.config_path)],
            cwd=self.workdir, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"budgetd exited with {self.proc.returncode}:\n{self.log()}")
            if health_status(self.address, timeout=0.5, tls=self.tls) == health_pb2.HealthCheckResponse.SERVING:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"budgetd did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def run_due_checks(self, timeout: float = 10.0) -> None:
        """Run the daemon's periodic jobs now (SIGUSR1; all but the digest) and
        wait until they are done: one more "due-checks done" log line."""
        done_before = self.log().count("due-checks done")
        self.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: self.log().count("due-checks done") > done_before, timeout, what="due-checks done")

    def terminate(self, timeout: float = 20.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self._reap(timeout)

    def kill(self) -> int:
        self.proc.kill()
        return self._reap(10)

    def _reap(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def restart(self) -> DaemonProcess:
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()
        return self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.terminate(10)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_until(condition, timeout: float = 10.0, interval: float = 0.05, what: str = "the condition"):
    """Poll ``condition()`` until it returns something true (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(interval)

"""Many idle connections must not lock callers out: budgetd raises its open
files soft limit to the hard limit at start, and closes connections that say
nothing (no handshake, or no call for the idle time)."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from budgetd_client import Budget, BudgetUnavailable
from grpc_health.v1 import health_pb2

from helpers import DaemonProcess, health_status, wait_until

SOFT = 1024  # a common default soft limit
IDLE = 2000
HTTP2 = 200  # of them, connections that open HTTP/2 in full and then make no call
SETTINGS, ACK = 4, 1
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, SETTINGS, 0, 0, 0, 0, 0])
CONFIG = "agents:\n  a1: {daily_usd: 10}\n"


class LimitedDaemon(DaemonProcess):
    """budgetd started under RLIMIT_NOFILE (soft, hard), as a shell with `ulimit -n` would start it."""

    def __init__(self, workdir: Path, limits: tuple[int, int], server_extra: str = "") -> None:
        super().__init__(workdir, CONFIG, server_extra=server_extra)
        self.limits = limits

    def start(self, timeout: float = 20.0) -> LimitedDaemon:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "budgetd", "--config", str(self.config_path)], cwd=self.workdir, env=self.env,
            stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, self.limits))
        wait_until(lambda: self.proc.poll() is not None or health_status(self.address, timeout=0.5)
                   == health_pb2.HealthCheckResponse.SERVING, timeout=timeout, what="budgetd to serve")
        assert self.proc.poll() is None, self.log()
        return self

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


# Thousands of connections at a file-descriptor limit: not while other tests need descriptors and cores.
pytestmark = pytest.mark.serial


@pytest.fixture
def many_files():
    """This side opens the idle connections: its own soft limit goes up for them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = IDLE + 500
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the open files hard limit ({hard}) is below the {need} this test opens")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    yield hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_idle(address: str, count: int, http2: int) -> list[socket.socket]:
    """``count`` connections that make no call: the first ``http2`` open
    HTTP/2 as a gRPC client does, the others connect and say nothing."""
    host, port = address.rsplit(":", 1)
    opened = []
    for i in range(count):
        s = socket.create_connection((host, int(port)), timeout=10)
        if i < http2:
            open_http2(s)
        opened.append(s)
    return opened


def open_http2(s: socket.socket) -> None:
    """Client preface and SETTINGS, then the ACK of the server's SETTINGS: the
    connection is up, and nothing but an idle limit ends it."""
    s.sendall(HTTP2_PREFACE)
    while True:
        header = _read(s, 9)
        length, kind, flags = int.from_bytes(header[:3], "big"), header[3], header[4]
        _read(s, length)
        if kind == SETTINGS and not flags & ACK:
            s.sendall(bytes([0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0]))
            return


def _read(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, "budgetd closed a connection while it opened"
        data += chunk
    return data


def guarded_call(address: str) -> None:
    """A new caller (a new connection), as an agent starting now would be."""
    budget = Budget(address, timeout=5)
    try:
        with budget.guard("a1", estimate_usd="0.01") as call:
            call.record_usd("0.01")
    finally:
        budget.close()


def test_2000_idle_connections_at_a_1024_soft_limit_leave_guarded_calls_working(tmp_path, many_files):
    daemon = LimitedDaemon(tmp_path, (SOFT, many_files)).start()
    try:
        idle = open_idle(daemon.address, IDLE, HTTP2)
        guarded_call(daemon.address)  # its connection is accepted after those queued before it
        assert daemon.open_files() > IDLE, "budgetd does not hold the idle connections open"
        assert f'"was": {SOFT}' in daemon.log(), daemon.log()
        for s in idle:
            s.close()
    finally:
        daemon.stop()


def test_at_a_1024_hard_limit_silent_and_idle_connections_are_closed_and_calls_get_through(tmp_path, many_files):
    # The hard limit is where budgetd cannot go past: connections that make
    # no call must be closed to make room (idle time shortened for the test).
    daemon = LimitedDaemon(tmp_path, (SOFT, SOFT), server_extra="connection_idle_seconds: 2").start()
    try:
        # HTTP/2 connections fill every descriptor budgetd has left; more wait unaccepted behind them.
        http2 = SOFT - daemon.open_files() - 4
        idle = open_idle(daemon.address, 1100, http2)

        def call_gets_through() -> bool:
            try:
                guarded_call(daemon.address)
                return True
            except BudgetUnavailable:
                return False

        wait_until(call_gets_through, timeout=90, interval=1, what="a guarded call to get through")
        wait_until(lambda: daemon.open_files() < 200, timeout=30, what="the idle connections to be closed")
        assert all(_closed(s) for s in idle)
        for s in idle:
            s.close()
    finally:
        daemon.stop()


def _closed(s: socket.socket) -> bool:
    """Whether budgetd closed it: what it sent (SETTINGS, GOAWAY) is read up to the end."""
    s.settimeout(5)
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True

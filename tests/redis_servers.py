"""Real redis-server processes for tests: on free ports, in temp dirs, so a
test can kill -9 and restart them. Never the machine's own Redis."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import redis

from helpers import free_port, free_port_pair


def redis_env() -> dict[str, str]:
    """The environment for redis-server and redis-cli. Debian builds them with
    jemalloc, which cannot start under libfaketime (its clock_gettime recurses
    at malloc init). A suite run with a faked clock (``faketime -f +365d make
    test``) therefore runs Redis on the real clock while the tests and budgetd
    run on the faked one."""
    env = dict(os.environ)
    preload = [lib for lib in env.get("LD_PRELOAD", "").split(":") if lib and "faketime" not in lib]
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    else:
        env.pop("LD_PRELOAD", None)
    return env


class PortTaken(RuntimeError):
    """redis-server found its port in use."""


class RedisServer:
    def __init__(self, workdir: Path, *extra: str, port: int | None = None, client_kwargs: dict | None = None) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (.ci/run installs it)")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        # A port picked here may be taken by another test's connection before
        # redis-server binds it: the first start then tries another one.
        self._may_move = port is None
        self.extra = extra
        self.client_kwargs = client_kwargs or {}  # how the readiness check connects (TLS, ACL)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> RedisServer:
        for attempt in range(3):
            try:
                self._start(timeout)
                break
            except PortTaken:
                if not self._may_move or attempt == 2:
                    raise
                self.port = free_port()
        self._may_move = False  # started: its clients know the port
        return self

    def _start(self, timeout: float) -> None:
        port_args = ["--port", str(self.port)]
        if "--tls-cert-file" in self.extra:
            port_args = ["--port", "0", "--tls-port", str(self.port)]
        self.proc = subprocess.Popen(
            ["redis-server", *port_args, "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--save", "", "--appendonly", "no", "--protected-mode", "no", "--logfile", "redis.log", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=redis_env(),
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, **self.client_kwargs)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.workdir / "redis.log").read_text()
                    raise (PortTaken if "Address already in use" in log else RuntimeError)(
                        f"redis-server did not start: {log}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class RedisCluster:
    """Three masters, no replicas: `redis-cli --cluster create`."""

    def __init__(self, workdir: Path) -> None:
        self.nodes = [RedisServer(workdir / f"node{i}", "--cluster-enabled", "yes",
                                  "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
                                  port=free_port_pair())
                      for i in range(3)]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0?cluster=true"

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60,
                       env=redis_env())
        client = redis.Redis(port=self.nodes[0].port, decode_responses=True)
        deadline = time.monotonic() + 30
        while client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
            assert time.monotonic() < deadline, "the cluster did not come up"
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

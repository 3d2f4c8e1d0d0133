from __future__ import annotations

import fcntl
import os

import pytest

from helpers import DaemonProcess
from redis_servers import RedisCluster, RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One redis-server for the session; tests keep apart by key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def start_daemon(tmp_path):
    """start_daemon(config_yaml) -> a running DaemonProcess; stopped after the test."""
    started: list[DaemonProcess] = []

    def start(config_body: str, env: dict[str, str] | None = None, name: str = "d",
              store_url: str | None = None, server_extra: str = "", tls=None) -> DaemonProcess:
        workdir = tmp_path / f"{name}{len(started)}"
        workdir.mkdir()
        daemon = DaemonProcess(workdir, config_body, env, store_url, server_extra, tls)
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.stop()


_LAYERS = ("unit", "store", "e2e")
# A test that asks for one of these fixtures needs a redis-server; tests that
# start their own servers are marked where they are written.
_BACKEND_FIXTURES = {"redis_server": ("redis",), "redis_cluster": ("redis", "cluster")}


def pytest_collection_modifyitems(config, items):
    """Mark every test with its layer, from the folder it lives in, so one
    layer runs alone (``pytest -m unit``), and a test that uses Redis with
    ``redis`` (``pytest -m "not redis"`` runs without a redis-server)."""
    for item in items:
        layer = item.path.parent.name
        if layer in _LAYERS:
            item.add_marker(layer)
        backends = {name for fixture in item.fixturenames for name in _BACKEND_FIXTURES.get(fixture, ())}
        if item.get_closest_marker("cluster"):
            backends.add("redis")  # a cluster is made of redis-servers
        for name in sorted(backends - {m.name for m in item.iter_markers()}):
            item.add_marker(name)
    # Serial tests first: at the start no long test is under way for them to wait out.
    items.sort(key=lambda item: item.get_closest_marker("serial") is None)


@pytest.fixture(autouse=True)
def _share_the_machine(request, tmp_path_factory):
    """Under pytest-xdist a test marked ``serial`` runs while no other test
    does (it times what it does, or loads the machine): every other test holds
    a shared lock while it runs, a serial one the exclusive lock. A turnstile
    in front keeps new tests from starving a serial one that waits."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    run_dir = tmp_path_factory.getbasetemp().parent  # one per run, shared by its workers
    serial = request.node.get_closest_marker("serial") is not None
    with open(run_dir / "turnstile.lock", "a") as turnstile, open(run_dir / "machine.lock", "a") as machine:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(machine, fcntl.LOCK_EX if serial else fcntl.LOCK_SH)
        if not serial:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        yield

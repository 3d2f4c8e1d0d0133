from __future__ import annotations

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


def pytest_collection_modifyitems(config, items):
    """Mark every test with its layer, from the folder it lives in, so one
    layer runs alone: ``pytest -m unit``."""
    for item in items:
        layer = item.path.parent.name
        if layer in _LAYERS:
            item.add_marker(layer)

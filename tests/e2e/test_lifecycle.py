"""Reflection, health, SIGTERM drain, and `make run` on the example config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import grpc
from budgetd_client import Budget, BudgetError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from helpers import ROOT, free_port, health_status, script, wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_reflection_lists_the_services_and_health_is_serving(start_daemon):
    daemon = start_daemon("agents:\n  a1: {daily_usd: 1}\n")
    with grpc.insecure_channel(daemon.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        names = {s.name for answer in answers for s in answer.list_services_response.service}
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "budgetd.v1.Budget", "budgetd.v1.Admin"):
            assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status == SERVING
    assert {"budgetd.v1.Budget", "budgetd.v1.Admin", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= names
    check = subprocess.run([script("budgetctl"), "--address", daemon.address, "health"], capture_output=True, text=True)
    assert check.returncode == 0 and "SERVING" in check.stdout


def test_the_start_banner_says_where_it_listens_and_what_to_try_next(start_daemon):
    daemon = start_daemon("agents:\n  a1: {}\n")
    text = daemon.log()
    for expected in (f"listening on {daemon.address} (pid {daemon.proc.pid})", str(daemon.config_path),
                     f"sqlite://{daemon.db_path}", f"budgetctl --address {daemon.address} status",
                     f"kill -HUP {daemon.proc.pid}", f"kill {daemon.proc.pid}, or Ctrl-C"):
        assert expected in text, text


def test_sigterm_turns_health_off_drains_in_flight_calls_and_exits_0(start_daemon):
    daemon = start_daemon("agents:\n  busy: {daily_usd: 1000}\n")
    # New holds wait for a restart that does not come here: 2 s, then refused.
    budget = Budget(daemon.address, timeout=2)
    acknowledged, settled = [], []
    stop = threading.Event()

    def load():
        count = 0
        while not stop.is_set():
            try:
                with budget.guard("busy", estimate_usd="0.001") as call:
                    call.record_usd("0.001")
            except BudgetError:
                break  # the daemon is gone: refused, never half-done (a settle late is kept, not raised)
            count += 1
            settled.append(1)
        acknowledged.append(count)

    watched = []

    def watch():
        with grpc.insecure_channel(daemon.address) as channel:
            try:
                for answer in health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=30):
                    watched.append(answer.status)
            except grpc.RpcError:
                pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    workers = [threading.Thread(target=load) for _ in range(16)]
    for w in workers:
        w.start()
    wait_until(lambda: len(settled) > 100 and watched, 30, what="the load to get going")
    assert daemon.terminate(timeout=30) == 0
    stop.set()
    for w in workers:
        w.join(30)
    watcher.join(30)
    kept = len(budget._kept)
    budget.close()

    assert kept == 0, "the drain refused a settle of a hold it had granted"
    assert watched[0] == SERVING and NOT_SERVING in watched
    assert '"msg": "stopped"' in daemon.log()
    total = sum(acknowledged)
    assert total > 50, "the load never got going"
    daemon.start()
    st = Budget(daemon.address).status("busy")
    # Every acknowledged settle was committed before exit, and nothing more was
    # counted: refused calls changed nothing.
    assert st.daily.spent_usd == Decimal("0.001") * total


def test_a_second_daemon_on_the_same_sqlite_file_or_port_fails_at_start(start_daemon, tmp_path):
    first = start_daemon("agents:\n  a1: {}\n")
    same_file = tmp_path / "same-file.yaml"
    same_file.write_text(f'server: {{listen: "127.0.0.1:{free_port()}"}}\nstore: {{url: "sqlite://{first.db_path}"}}\n')
    same_port = tmp_path / "same-port.yaml"
    same_port.write_text(f'server: {{listen: "{first.address}"}}\nstore: {{url: "sqlite://{tmp_path}/other.db"}}\n')
    for config, message in ((same_file, "in use by another budgetd"), (same_port, "cannot listen")):
        second = subprocess.run([script("budgetd"), "--config", str(config)], capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and message in second.stderr, second.stderr
    assert health_status(first.address) == SERVING


def test_make_run_starts_budgetd_on_the_example_config(tmp_path):
    port, dashboard_port = free_port(), free_port()
    env = {**os.environ, "BUDGETD_LISTEN": f"127.0.0.1:{port}",
           "BUDGETD_DASHBOARD_LISTEN": f"127.0.0.1:{dashboard_port}"}
    run = subprocess.Popen(["make", "--no-print-directory", "run", f"RUN_DIR={tmp_path}"], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600  # the first `make run` on a fresh clone builds .venv
        while health_status(f"127.0.0.1:{port}") != SERVING:
            assert run.poll() is None, run.stdout.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        budget = Budget(f"127.0.0.1:{port}")
        with budget.guard("summarizer") as call:
            call.record_usd("0.02")
        assert budget.status("summarizer").daily.cap_usd == Decimal("50")
        assert (Path(tmp_path) / "budgetd.db").exists()
        # The example config serves the dashboard (on loopback: no token needed).
        with urllib.request.urlopen(f"http://127.0.0.1:{dashboard_port}/api/v1/fleet?kind=agent", timeout=10) as r:
            rows = {row["id"]: row for row in json.load(r)["rows"]}
        assert rows["summarizer"]["daily"]["spent_usd"] == "0.02"
    finally:
        try:
            os.killpg(run.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        run.wait(30)

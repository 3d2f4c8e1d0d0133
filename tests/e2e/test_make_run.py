"""`make run` as a person runs it: a SIGTERM to make, to the PID budgetd
prints, or Ctrl-C stops budgetd, and the next `make run` starts on the same
SQLite file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from budgetd_client import Budget
from grpc_health.v1 import health_pb2

from helpers import ROOT, free_port, health_status, wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING


class MakeRun:
    """`make run` in the repo with its own RUN_DIR and port, in a session of its own."""

    def __init__(self, run_dir: Path, port: int) -> None:
        self.address = f"127.0.0.1:{port}"
        self.dashboard = f"127.0.0.1:{free_port()}"
        self.out_path = run_dir / f"make-run-{time.monotonic_ns()}.out"
        self._out = open(self.out_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"RUN_DIR={run_dir}", f"BUDGETD_LISTEN={self.address}",
             f"BUDGETD_DASHBOARD_LISTEN={self.dashboard}"],
            cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_serving(self) -> int:
        """budgetd's PID, as its start banner prints it."""
        deadline = time.monotonic() + 600  # a fresh clone's first run builds .venv
        while health_status(self.address) != SERVING:
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.2)
        found = wait_until(lambda: re.search(r"listening on \S+ \(pid (\d+)\)", self.output()), what="the banner")
        return int(found.group(1))

    def group(self) -> list[int]:
        """The live processes of make's session: make, and whatever it started."""
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[3]) == self.proc.pid:  # state, pgrp
                alive.append(int(stat.parent.name))
        return alive

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        self._out.close()


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_sigterm_to_make_or_to_budgetd_stops_budgetd_and_the_next_make_run_starts(tmp_path):
    port = free_port()
    runs = []
    try:
        first = MakeRun(tmp_path, port)
        runs.append(first)
        pid = first.wait_serving()
        assert children(first.proc.pid) == [pid], "budgetd is not make's own child (no shell between)"
        out = first.output()
        for hint in (f"make budgetctl ARGS=status BUDGETD_LISTEN={first.address}", f"kill -HUP {pid}",
                     f"kill {pid}", "Ctrl-C", f"sqlite://{tmp_path}/budgetd.db", "config/budgets.yaml",
                     f"dashboard: http://{first.dashboard}/"):
            assert hint in out, out
        with Budget(first.address) as budget, budget.guard("summarizer") as call:
            call.record_usd("0.02")

        first.proc.send_signal(signal.SIGTERM)  # to make, not to its group
        first.proc.wait(30)
        wait_until(lambda: not first.group(), timeout=30, what="budgetd to stop after make's SIGTERM")
        assert '"msg": "stopped"' in first.output(), "budgetd did not drain"

        second = MakeRun(tmp_path, port)
        runs.append(second)
        pid = second.wait_serving()
        with Budget(second.address) as budget:
            assert budget.status("summarizer").daily.spent_usd > 0  # the same file, unlocked
        status = subprocess.run(["make", "--no-print-directory", "budgetctl", "ARGS=status summarizer",
                                 f"BUDGETD_LISTEN={second.address}"], cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
        assert status.returncode == 0 and "summarizer" in status.stdout, status.stdout + status.stderr

        os.kill(pid, signal.SIGTERM)  # the PID the banner printed
        assert second.proc.wait(30) == 0, second.output()
        assert not second.group()

        third = MakeRun(tmp_path, port)
        runs.append(third)
        third.wait_serving()
        os.killpg(third.proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals make and budgetd alike
        third.proc.wait(30)
        wait_until(lambda: not third.group(), timeout=30, what="budgetd to stop on Ctrl-C")
        assert '"msg": "stopped"' in third.output()
    finally:
        for run in runs:
            run.close()

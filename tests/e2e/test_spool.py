"""Settles are never dropped: a Commit or Release budgetd did not take within
the timeout is kept (in memory; in a spool directory too, when one is set),
sent again until budgetd acknowledges it, and counted once. Against a real
budgetd that is killed (kill -9) between a guard's hold and its settle, so the
hold it granted is in SQLite when it comes back."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest
from budgetd_client import Budget, BudgetUnavailable
from budgetd_client import _core, _spool
from budgetd_client.v1 import budget_pb2 as pb

from helpers import ROOT, wait_until

D = Decimal
CONFIG = "timezone: UTC\nreservation_ttl_seconds: 600\nagents:\n  a1: {daily_usd: 100}\n"


def spent_and_reserved(address: str, agent: str = "a1") -> tuple[Decimal, Decimal]:
    with_budget = Budget(address)
    try:
        st = with_budget.status(agent)
    finally:
        with_budget.close()
    return st.daily.spent_usd, st.daily.reserved_usd


def test_settles_the_daemon_cannot_take_in_time_are_kept_and_counted_once_it_is_back(start_daemon, caplog):
    daemon = start_daemon(CONFIG)
    budget = Budget(daemon.address, timeout=1)
    caplog.set_level(logging.WARNING, logger="budgetd_client")
    with budget.guard("a1", estimate_usd="0.01") as paid:
        with pytest.raises(RuntimeError, match="model call failed"):  # the block's own error, not ours
            with budget.guard("a1", estimate_usd="0.02"):
                daemon.kill()  # the model call is under way when budgetd dies
                raise RuntimeError("model call failed")
        paid.record_usd("0.004")
        started = time.monotonic()
    waited = time.monotonic() - started
    assert 0.9 < waited < 2.0, waited  # the commit waited its timeout, then was kept: no raise
    assert "the commit of 0.004 USD for a1" in caplog.text and "the release for a1" in caplog.text
    assert caplog.text.count("kept in memory only") == 2
    assert len(budget._kept) == 2

    daemon.start()
    # The retrier sends them with no further call from the agent.
    wait_until(lambda: not budget._kept.pending, timeout=10, what="the kept settles to be delivered")
    # The commit settled the first hold, the release freed the second: nothing charged for it.
    assert spent_and_reserved(daemon.address) == (D("0.004"), 0)
    budget.close()


def test_a_refused_kept_settle_is_dropped_not_retried_and_a_full_memory_spool_says_so(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="budgetd_client")
    settings = _core.Settings.resolve("127.0.0.1:1", None, 1, False)
    memory = _spool.Spool(settings, limit=2)
    for rid in ("r1", "r2", "r3"):
        memory.keep(pb.CommitRequest(agent_id="a1", request_id=rid, actual_nanos=1))
    assert list(memory.pending) == ["r2.commit", "r3.commit"]  # the oldest dropped, loudly
    assert "DROPPED" in caplog.text and "request r1" in caplog.text

    on_disk = _spool.Spool(_core.Settings.resolve("127.0.0.1:1", None, 1, False, spool_path=tmp_path), limit=2)
    for rid in ("r1", "r2", "r3"):
        on_disk.keep(pb.CommitRequest(agent_id="a1", request_id=rid, actual_nanos=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r1.commit", "r2.commit", "r3.commit"]
    assert "more are kept in" in caplog.text  # memory full: the third is on disk only
    on_disk.delivered("r1.commit")
    assert [name for name, _ in on_disk.batch()] == ["r2.commit", "r3.commit"]  # taken in from disk
    on_disk.refused("r2.commit", ValueError("agent_id: no such agent"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r2.commit.refused", "r3.commit"]
    assert "budgetd refused a kept settle, so it is dropped" in caplog.text
    for spool in (memory, on_disk):  # not left for the at-exit flush of the test process
        for name in list(spool.pending):
            spool.delivered(name)


AGENT = textwrap.dedent("""
    import asyncio, logging, os, sys, time
    from pathlib import Path
    from budgetd_client import AsyncBudget, Budget

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    mode, address = sys.argv[1], sys.argv[2]
    if mode == "settle":  # hold, wait while the daemon is killed, record, leave
        budget = Budget(address, timeout=float(sys.argv[3]), spool_path=os.environ.get("SPOOL_ARG"))
        with budget.guard("a1", estimate_usd="0.01") as call:
            print("held", flush=True)
            sys.stdin.readline()
            call.record_usd("0.004")
        print("left", flush=True)
    elif mode == "settle-async":  # the same with AsyncBudget; the loop ends with no close()
        async def main():
            budget = AsyncBudget(address, timeout=float(sys.argv[3]), spool_path=os.environ.get("SPOOL_ARG"))
            async with budget.guard("a1", estimate_usd="0.01") as call:
                print("held", flush=True)
                await asyncio.to_thread(sys.stdin.readline)
                call.record_usd("0.004")
            print("left", flush=True)
        asyncio.run(main())
    else:  # "deliver": a new agent process; it makes no call, the retrier delivers
        budget = Budget(address, timeout=5)  # the spool from BUDGETD_SPOOL
        spool = Path(os.environ["BUDGETD_SPOOL"])
        deadline = time.monotonic() + 15
        while [p for p in spool.iterdir() if p.suffix in (".commit", ".release")] and time.monotonic() < deadline:
            time.sleep(0.05)
        print("empty" if time.monotonic() < deadline else "not delivered", flush=True)
""")


def agent(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    return subprocess.Popen([sys.executable, str(script), *args], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def settle_while_down(tmp_path: Path, daemon, timeout: str, env: dict[str, str], restart_on_left: bool = False,
                      mode: str = "settle"):
    """An agent process holds, budgetd is killed, the agent settles and exits."""
    proc = agent(tmp_path, mode, daemon.address, timeout, env=env)
    assert proc.stdout.readline() == "held\n", proc.stderr.read()
    daemon.kill()
    proc.stdin.write("\n")
    proc.stdin.flush()
    left = proc.stdout.readline()
    if restart_on_left:
        daemon.start()  # while the agent's at-exit flush is waiting
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and left == "left\n", err
    return err


def test_a_file_spool_carries_a_settle_to_the_next_agent_process_which_delivers_it_once(start_daemon, tmp_path):
    daemon = start_daemon(CONFIG)
    spool = tmp_path / "spool"
    err = settle_while_down(tmp_path, daemon, "1", {"SPOOL_ARG": str(spool)})
    assert "the commit of 0.004 USD for a1" in err and f"kept in {spool}" in err
    assert "stay in" in err and "a later Budget with this spool path delivers them" in err
    files = list(spool.glob("*.commit"))
    assert len(files) == 1
    saved = tmp_path / files[0].name
    shutil.copy(files[0], saved)

    daemon.start()
    assert spent_and_reserved(daemon.address) == (0, D("0.01"))  # the hold the killed daemon granted
    deliver = agent(tmp_path, "deliver", daemon.address, env={"BUDGETD_SPOOL": str(spool)})
    out, err = deliver.communicate(timeout=30)
    assert deliver.returncode == 0 and out == "empty\n", err
    assert "1 settles left in" in err and "by an earlier process" in err
    assert spent_and_reserved(daemon.address) == (D("0.004"), 0)

    # Delivered again (the file put back, as if its deletion had been lost):
    # counted once. And a settle budgetd refuses is set aside, not retried.
    shutil.copy(saved, spool / saved.name)
    ghost = pb.CommitRequest(agent_id="ghost", request_id="ghost-1", actual_nanos=1_000)
    (spool / "ghost-1.commit").write_bytes(ghost.SerializeToString())
    again = agent(tmp_path, "deliver", daemon.address, env={"BUDGETD_SPOOL": str(spool)})
    out, err = again.communicate(timeout=30)
    assert again.returncode == 0 and out == "empty\n", err
    assert "budgetd refused a kept settle" in err and "ghost" in err
    assert sorted(p.name for p in spool.iterdir()) == ["ghost-1.commit.refused"]
    assert spent_and_reserved(daemon.address) == (D("0.004"), 0)


@pytest.mark.parametrize("mode", ["settle", "settle-async"])
def test_a_settle_kept_in_memory_is_delivered_at_exit_if_budgetd_is_back_in_time(start_daemon, tmp_path, mode):
    daemon = start_daemon(CONFIG)
    # No spool path: the settle is in memory only; the process ends right after
    # keeping it (for AsyncBudget its loop is gone by then), and its at-exit
    # flush (up to min(timeout, 5 s)) delivers it to the daemon restarted meanwhile.
    # The timeout sets the at-exit flush (min(timeout, 5 s)): the longest, so a
    # daemon slow to start on a loaded machine is still back in time.
    err = settle_while_down(tmp_path, daemon, "5", {}, restart_on_left=True, mode=mode)
    assert "kept in memory only" in err and "LOST" not in err
    assert spent_and_reserved(daemon.address) == (D("0.004"), 0)


def test_a_call_waits_its_whole_timeout_for_a_daemon_that_is_down_and_says_why(start_daemon):
    daemon = start_daemon(CONFIG)
    budget = Budget(daemon.address, timeout=1.5)
    budget.status("a1")
    daemon.kill()
    started = time.monotonic()
    with pytest.raises(BudgetUnavailable) as down:
        budget.status("a1")
    waited = time.monotonic() - started
    assert 1.45 < waited < 1.8, waited
    assert f"budgetd at {daemon.address} did not answer within 1.5s" in str(down.value)
    assert "Connection refused" in str(down.value)
    budget.close()

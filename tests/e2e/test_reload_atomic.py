"""A reload is swapped whole: while budgets.yaml is rewritten and reloaded
under callers, every answer comes from one config (the agent's cap and its
group's cap always from the same generation), and no call fails on the way."""

from __future__ import annotations

import signal
import threading
from decimal import Decimal

from budgetd_client import Budget

from helpers import wait_until

AGENTS = 5_000  # enough that building the new config takes a while (tens of ms)


def config(cap: int) -> str:
    lines = ["agents:"] + [f"  a{i}: {{daily_usd: {cap}}}" for i in range(AGENTS)]
    lines += ["groups:", f"  everyone: {{members: ['a*'], daily_usd: {cap}}}", ""]
    return "\n".join(lines)


def test_callers_during_reloads_see_one_config_or_the_next_never_a_mix(start_daemon):
    daemon = start_daemon(config(1))
    budget = Budget(daemon.address, timeout=10)
    seen: set[tuple[Decimal, Decimal]] = set()
    failures: list[BaseException] = []
    done = threading.Event()

    def read(agent_id: str) -> None:
        while not done.is_set():
            try:
                st = budget.status(agent_id)
                seen.add((st.daily.cap_usd, st.groups[0].daily.cap_usd))
                with budget.guard(agent_id, estimate_usd="0.000001") as call:
                    call.record_usd("0.000001")
            except BaseException as err:  # noqa: BLE001 - every failure is the finding
                failures.append(err)
                return

    readers = [threading.Thread(target=read, args=(f"a{i}",)) for i in (0, AGENTS // 2, AGENTS - 1)]
    for t in readers:
        t.start()
    try:
        for cap in (2, 3, 4):
            daemon.write_config(config(cap))
            daemon.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: budget.status("a0").daily.cap_usd == cap, timeout=60,
                       what=f"the reload to cap {cap}")
    finally:
        done.set()
        for t in readers:
            t.join(30)
        budget.close()
    assert not failures, failures
    mixed = {pair for pair in seen if pair[0] != pair[1]}
    assert not mixed, f"an answer mixed an agent cap with another generation's group cap: {mixed}"
    assert Decimal(1) in {a for a, _ in seen} and len(seen) >= 2, f"the readers saw no reload: {seen}"

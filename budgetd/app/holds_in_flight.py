"""Holds this process granted and has not yet seen settled or released, with
their deadlines and amounts: a drain waits for them (a deadline passed means
the sweeper settles the hold, so a drain does not wait for those), and a
settle compares what was held with what the call cost (a metric)."""

from __future__ import annotations

import asyncio


class HoldsInFlight:
    def __init__(self) -> None:
        # (agent id, request id) -> (deadline unix ms, nanos held)
        self.holds: dict[tuple[str, str], tuple[int, int]] = {}
        self.draining = False
        self._all_settled = asyncio.Event()

    def __len__(self) -> int:
        return len(self.holds)

    def granted(self, agent_id: str, request_id: str, deadline_ms: int, held_nanos: int) -> None:
        self.holds[(agent_id, request_id)] = (deadline_ms, held_nanos)

    def ended(self, agent_id: str, request_id: str) -> int | None:
        """The nanos held, if this process granted the hold (else None)."""
        entry = self.holds.pop((agent_id, request_id), None)
        if entry is None:
            return None
        if self.draining and not self.holds:
            self._all_settled.set()
        return entry[1]

    def forget_lapsed(self, now_ms: int) -> None:
        """Drop holds past their deadline (the sweeper's now)."""
        for key in [key for key, (deadline, _) in self.holds.items() if deadline <= now_ms]:
            del self.holds[key]
        if self.draining and not self.holds:
            self._all_settled.set()

    def stop_waiting(self) -> None:
        """Stop waiting for the holds still out (a second signal)."""
        self.holds.clear()
        self._all_settled.set()

    async def drain(self, now_ms: int, grace_seconds: float) -> int:
        """From now on ``draining``; wait until every hold is settled, released
        or past its deadline, or ``grace_seconds`` pass. Returns how many were
        left unsettled."""
        self.draining = True
        self.forget_lapsed(now_ms)
        if self.holds:
            try:
                await asyncio.wait_for(self._all_settled.wait(), grace_seconds)
            except TimeoutError:
                pass
        return len(self.holds)

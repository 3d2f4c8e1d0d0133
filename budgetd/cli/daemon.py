"""`budgetd --config FILE`: run the daemon until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from .. import __version__, logs
from ..config import ConfigError, load_config
from ..server import Daemon
from ..store import StoreError

log = logging.getLogger("budgetd")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="budgetd", description="Per-agent spend enforcement for LLM calls.")
    parser.add_argument("--config", required=True, help="path to budgets.yaml")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--version", action="version", version=f"budgetd {__version__}")
    args = parser.parse_args(argv)
    logs.setup(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"budgetd: invalid config\n{err}", file=sys.stderr)
        return 1
    try:
        return _run(_serve(config, args.config))
    except (StoreError, OSError) as err:
        print(f"budgetd: {err}", file=sys.stderr)
        return 1


def _run(main):
    """Run on uvloop where it is installed (Linux and macOS): its loop spends
    less time per callback than asyncio's, and the daemon's work is mostly
    callbacks (gRPC completions, store replies)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def _serve(config, path: str) -> int:
    daemon = Daemon(config, config_path=path)
    await daemon.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # SIGHUP: reload budgets.yaml now (it is also noticed within a second).
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(daemon.reloader.reload("SIGHUP")))
    await stop.wait()
    # A second SIGTERM or SIGINT during the drain stops at once.
    draining = loop.create_task(daemon.stop())
    stop.clear()
    again = loop.create_task(stop.wait())
    await asyncio.wait((draining, again), return_when=asyncio.FIRST_COMPLETED)
    if not draining.done():
        log.warning("stopping now: a second signal ended the drain")
        daemon.core.end_drain_now()
        await draining
    again.cancel()
    return 0

"""`budgetd --config FILE`: run the daemon until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import signal
import sys

from .. import __version__, logs
from ..config import ConfigError, load_config
from ..server import Daemon, store_shown
from ..store import StoreError

log = logging.getLogger("budgetd")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="budgetd", description="Per-agent spend enforcement for LLM calls.")
    parser.add_argument("--config", required=True, help="path to budgets.yaml")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--version", action="version", version=f"budgetd {__version__}")
    args = parser.parse_args(argv)
    logs.setup(args.log_level)
    raise_open_files_limit()
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


def raise_open_files_limit() -> None:
    """Every client connection is a file descriptor: a soft limit of 1,024 (a
    common default) would leave budgetd unable to accept a connection, so
    unable to answer any new caller, once about a thousand are open, idle or
    not. The hard limit is what this process may use without privileges."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:
        target = max(soft, 1_048_576) if soft != resource.RLIM_INFINITY else soft
    if soft == target:
        log.info("open files limit", extra={"soft": soft, "hard": hard})
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as err:  # macOS caps it below an "unlimited" hard limit
        log.warning("open files limit left as it was", extra={"soft": soft, "hard": hard, "error": str(err)})
        return
    log.info("open files limit raised", extra={"was": soft, "now": target, "hard": hard})


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
    # Before the port opens: a SIGTERM that comes as soon as budgetd answers
    # must drain it, not kill it where it stands.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await daemon.start()
    print(banner(daemon, path), file=sys.stderr, flush=True)
    # SIGHUP: reload budgets.yaml now (it is also noticed within a second),
    # and reopen the export file (a log rotator moved it away).
    reloader = daemon.reloader
    assert reloader is not None  # the daemon was started from a file
    sink = daemon.sink

    def hangup() -> None:
        if sink is not None:
            sink.reopen()
        loop.create_task(reloader.reload("SIGHUP"))

    loop.add_signal_handler(signal.SIGHUP, hangup)
    # SIGUSR1: run the periodic due-checks now (all but the digest), then log "due-checks done".
    loop.add_signal_handler(signal.SIGUSR1, lambda: loop.create_task(daemon.run_due_checks()))
    await stop.wait()
    # A second SIGTERM or SIGINT during the drain stops at once.
    draining = loop.create_task(daemon.stop())
    stop.clear()
    again = loop.create_task(stop.wait())
    await asyncio.wait((draining, again), return_when=asyncio.FIRST_COMPLETED)
    if not draining.done():
        log.warning("stopping now: a second signal ended the drain")
        daemon.service.holds_in_flight.stop_waiting()
        await draining
    again.cancel()
    return 0


def banner(daemon: Daemon, path: str) -> str:
    """What a person who just started budgetd wants to know next, in words
    (the JSON "listening" line is for log collectors)."""
    server = daemon.config.server
    host = server.listen.rsplit(":", 1)[0]
    address = f"{host}:{daemon.port}"
    pid = os.getpid()
    status = os.environ.get("BUDGETD_STATUS_HINT") or f"budgetctl --address {address} status"
    spent = "what each agent spent" + (" (BUDGETD_TOKEN: an admin token)" if daemon.config.auth else "")
    lines = [
        f"budgetd {__version__} is listening on {address} (pid {pid})",
        f"  config:  {path}",
        f"  store:   {store_shown(daemon.config.store.url)}",
    ]
    if daemon.metrics_port is not None and server.metrics_listen:
        lines.append(f"  metrics: http://{server.metrics_listen.rsplit(':', 1)[0]}:{daemon.metrics_port}/metrics")
    if daemon.dashboard_port is not None and server.dashboard_listen:
        scheme = "https" if server.tls else "http"
        lines.append(f"  dashboard: {scheme}://{server.dashboard_listen.rsplit(':', 1)[0]}:{daemon.dashboard_port}/"
                     + (" (sign in with an admin token)" if daemon.config.auth else ""))
    steps = [
        (status, spent),
        (f"kill -HUP {pid}", f"reload {path} (an edit is also picked up within a second)"),
        (f"kill {pid}, or Ctrl-C", "stop (calls in flight finish first)"),
    ]
    width = max(len(command) for command, _ in steps)
    lines.append("next:")
    lines += [f"  {command.ljust(width)}   {what}" for command, what in steps]
    return "\n".join(lines)

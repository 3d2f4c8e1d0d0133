"""Settles budgetd has not acknowledged yet, kept until it does.

A guard's Commit or Release that budgetd did not take within the timeout is
kept here instead of being lost: always in memory (at most ``SPOOL_LIMIT``),
and, with a spool path (``spool_path=`` or ``$BUDGETD_SPOOL``), in a file per
settle that outlives the process. A retrier sends the kept settles again in
the background (a thread for ``Budget``, a task on the running loop for
``AsyncBudget``) until budgetd acknowledges each; at exit they get one more
bounded try, and what is left stays in the spool directory for the next
process that uses it. Every settle carries its request id, so one sent twice
(by a retry, by two processes sharing a directory) is counted once.

Shared by both clients; the sync and async halves differ only in the retrier
(``ThreadRetrier`` / ``TaskRetrier``, with the same methods).
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError

from . import _core
from .v1 import budget_pb2 as pb
from .v1 import budget_pb2_grpc as pb_grpc

log = logging.getLogger("budgetd_client")

SPOOL_LIMIT = 10_000  # settles kept in memory per Budget
EXIT_FLUSH_SECONDS = 5.0  # at most this long at exit (or the timeout, if shorter)

_KINDS: dict[str, type[pb.CommitRequest] | type[pb.ReleaseRequest]] = {
    "commit": pb.CommitRequest, "release": pb.ReleaseRequest}
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")

# Spools with settles not yet acknowledged, held strongly: a Budget dropped
# with settles pending must still get them to budgetd at exit.
_LIVE: set[Spool] = set()
_LIVE_LOCK = threading.Lock()


def file_name(request: pb.CommitRequest | pb.ReleaseRequest) -> str:
    """One file per settle, named by its request id (hashed if the id is not
    a plain file name)."""
    kind = "release" if isinstance(request, pb.ReleaseRequest) else "commit"
    rid = request.request_id
    if not _SAFE_NAME.fullmatch(rid):
        rid = "h" + hashlib.sha256(f"{request.agent_id}\0{rid}".encode()).hexdigest()[:40]
    return f"{rid}.{kind}"


class Spool:
    """The settles one Budget keeps: ``pending`` maps a file name to its
    request, oldest first. Thread-safe."""

    def __init__(self, settings: _core.Settings, limit: int = SPOOL_LIMIT) -> None:
        self.settings = settings
        self.path = Path(settings.spool_path) if settings.spool_path else None
        self.limit = limit
        self.pending: dict[str, pb.CommitRequest | pb.ReleaseRequest] = {}
        self.retrier: ThreadRetrier | TaskRetrier | None = None
        self._lock = threading.Lock()
        self._on_disk_only = False  # memory was full: some kept settles are only in files
        self._delivered = 0  # since the spool was last empty
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            with self._lock:
                self._scan()
            if self.pending:
                log.warning("budgetd: %d settles left in %s by an earlier process; delivering them",
                            len(self.pending), self.path)
                self._live(True)

    def __len__(self) -> int:
        return len(self.pending)

    # -- keeping -------------------------------------------------------------
    def keep(self, request: pb.CommitRequest | pb.ReleaseRequest) -> str:
        """Keep a settle until budgetd acknowledges it; says where it is kept."""
        name = file_name(request)
        path = self.path
        on_disk = path is not None and self._write(path, name, request)
        where = (f"in {path / name}" if path is not None and on_disk
                 else "in memory only (no spool_path or BUDGETD_SPOOL)")
        with self._lock:
            if name in self.pending or len(self.pending) < self.limit:
                self.pending[name] = request
            elif on_disk:
                if not self._on_disk_only:
                    log.error("budgetd: %d settles kept in memory, the most it keeps; more are kept in %s only "
                              "and delivered as room frees", self.limit, self.path)
                self._on_disk_only = True
            else:
                oldest = next(iter(self.pending))
                log.error("budgetd: %d settles kept in memory, the most it keeps, and no spool file: the %s is "
                          "DROPPED (lost); set spool_path= or BUDGETD_SPOOL to keep settles on disk", self.limit,
                          _core.describe_settle(self.pending.pop(oldest)))
                self.pending[name] = request
        self._live(True)
        return where

    def _write(self, path: Path, name: str, request) -> bool:
        """Write the settle's file durably: a temp file, fsync, rename, fsync
        of the directory. False (logged) if the disk refused."""
        final = path / name
        tmp = path / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, request.SerializeToString())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
            _fsync_dir(path)
            return True
        except OSError as err:
            log.error("budgetd: could not write the spool file %s (%s); the settle is kept in memory only",
                      final, err)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return False

    def _scan(self) -> None:
        """Take in spool files not yet in memory (left by an earlier process,
        or kept on disk only), oldest first, up to the limit. Lock held."""
        try:
            entries = [e for e in os.scandir(self.path) if not e.name.startswith(".")
                       and e.name.rpartition(".")[2] in _KINDS and e.name not in self.pending]
        except OSError as err:
            log.error("budgetd: cannot read the spool directory %s: %s", self.path, err)
            return
        self._on_disk_only = False
        for entry in sorted(entries, key=_mtime):
            if len(self.pending) >= self.limit:
                self._on_disk_only = True
                return
            try:
                with open(entry.path, "rb") as f:
                    request = _KINDS[entry.name.rpartition(".")[2]].FromString(f.read())
                if not (request.request_id and request.agent_id):
                    raise DecodeError("no request or agent id")
            except FileNotFoundError:
                continue  # delivered by another process meanwhile
            except (OSError, DecodeError) as err:
                log.error("budgetd: spool file %s is unreadable (%s); set aside as .bad", entry.path, err)
                _rename(entry.path, entry.path + ".bad")
                continue
            self.pending[entry.name] = request

    # -- what the retrier asks ----------------------------------------------
    def batch(self) -> list[tuple[str, pb.CommitRequest | pb.ReleaseRequest]]:
        """The kept settles to send now, oldest first (files of other
        processes included, when a spool path is set)."""
        with self._lock:
            if self.path is not None:
                self._scan()
            return list(self.pending.items())

    def delivered(self, name: str) -> None:
        """budgetd acknowledged the settle: forget it, file included."""
        with self._lock:
            if self.path is not None:
                try:
                    os.unlink(self.path / name)
                except FileNotFoundError:
                    pass
                except OSError as err:  # it would be sent again: harmless, counted once
                    log.warning("budgetd: could not delete the delivered spool file %s: %s", name, err)
            self._delivered += self.pending.pop(name, None) is not None
            empty = not self.pending and not self._on_disk_only
            delivered, self._delivered = (self._delivered, 0) if empty else (0, self._delivered)
        log.info("budgetd: a kept settle was delivered: %s", name)
        if empty:
            self._live(False)
            if delivered:
                log.warning("budgetd: budgetd acknowledged the %d kept settles; none is left", delivered)

    def refused(self, name: str, err: Exception) -> None:
        """budgetd refused the settle (not unavailable): it would refuse it
        forever, so it is dropped, and its file set aside as ``.refused``."""
        with self._lock:
            request = self.pending.pop(name, None)
            kept = ""
            if self.path is not None and _rename(self.path / name, self.path / f"{name}.refused"):
                kept = f"; its file is kept as {self.path / name}.refused"
            empty = not self.pending and not self._on_disk_only
        what = _core.describe_settle(request) if request is not None else name
        log.error("budgetd refused a kept settle, so it is dropped: the %s: %s%s", what, err, kept)
        if empty:
            self._live(False)

    def _live(self, pending: bool) -> None:
        with _LIVE_LOCK:
            (_LIVE.add if pending else _LIVE.discard)(self)

    def report_left(self, when: str) -> None:
        """Log what budgetd has not acknowledged (at close or at exit)."""
        with self._lock:
            left = list(self.pending.values())
            more = self._on_disk_only
        if not left and not more:
            return
        count = f"{len(left)}{'+' if more else ''}"
        if self.path is not None:
            log.warning("budgetd: %s settles not yet acknowledged %s stay in %s; a later Budget with this spool "
                        "path delivers them", count, when, self.path)
        elif when == "at exit":
            log.error("budgetd: %s settles budgetd never acknowledged are LOST at exit (set spool_path= or "
                      "BUDGETD_SPOOL to keep them on disk): %s", count,
                      "; ".join(_core.describe_settle(r) for r in left[:20]) + ("; ..." if len(left) > 20 else ""))
        else:
            log.warning("budgetd: %s settles not yet acknowledged %s; they are tried again at exit", count, when)

    # -- at exit ---------------------------------------------------------------
    def flush_blocking(self, deadline: float) -> None:
        """Send the kept settles on a channel of its own, blocking, until
        ``deadline`` (monotonic): works after the event loop is gone."""
        batch = self.batch()
        if not batch:
            return
        channel = _core.channel(self.settings)
        stub = pb_grpc.BudgetStub(channel)
        try:
            for name, request in batch:
                method = stub.Release if isinstance(request, pb.ReleaseRequest) else stub.Commit
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    try:
                        method(request, timeout=left, metadata=self.settings.metadata, wait_for_ready=True)
                    except grpc.RpcError as err:
                        if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                            return
                        if _core.is_transient(err):
                            time.sleep(min(_core.RETRY_MAX_PAUSE, max(0.0, deadline - time.monotonic())))
                            continue
                        self.refused(name, _core.translate_rpc_error(err))
                        break
                    self.delivered(name)
                    break
        finally:
            channel.close()


def _mtime(entry: os.DirEntry) -> float:
    try:
        return entry.stat().st_mtime
    except OSError:
        return 0.0


def _rename(src, dst) -> bool:
    try:
        os.replace(src, dst)
        return True
    except OSError:
        return False


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ThreadRetrier:
    """``Budget``'s retrier: runs the budget's retry loop in a daemon thread,
    started when a settle is kept and ending when none is left."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._again = False
        self._stop = threading.Event()

    def start(self, loop) -> None:
        with self._lock:
            self._stop.clear()
            thread = self._thread
            if thread is not None and thread.is_alive() and self._pid == os.getpid():
                self._again = True  # it may be just ending: it runs the loop once more
                return
            self._again, self._pid = False, os.getpid()
            self._thread = threading.Thread(target=self._run, args=(loop,), name="budgetd-settle-retrier",
                                            daemon=True)
            self._thread.start()

    def _run(self, loop) -> None:
        while True:
            try:
                loop()
            except Exception:
                log.exception("budgetd: the settle retrier failed; it starts again with the next kept settle")
            with self._lock:
                if not self._again or self._stop.is_set():
                    self._thread = None
                    return
                self._again = False

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def stop(self) -> None:
        self._stop.set()

    halt = stop  # at exit


class TaskRetrier:
    """``AsyncBudget``'s retrier: the retry loop as a task on the running
    loop. With no loop running it starts with the next call made on one (and
    the at-exit flush still delivers what is kept)."""

    def __init__(self) -> None:
        self._task: asyncio.Task | None = None
        self._stopping = False

    def start(self, loop) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._stopping = False
        task = self._task
        if task is not None and not task.done() and task.get_loop() is running:
            return  # it reads the spool again before it ends, on this same thread
        self._task = running.create_task(self._run(loop), name="budgetd-settle-retrier")

    @staticmethod
    async def _run(loop) -> None:
        try:
            await loop()
        except Exception:
            log.exception("budgetd: the settle retrier failed; it starts again with the next kept settle")

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is None or task.done():
            return
        try:
            same_loop = task.get_loop() is asyncio.get_running_loop()
        except RuntimeError:
            same_loop = False
        task.cancel()
        if same_loop:
            await asyncio.wait({task})

    def halt(self) -> None:  # at exit, when the loop is gone or going
        self._stopping = True


def flush_at_exit() -> None:
    """At interpreter exit: one bounded try (min(timeout, 5 s)) for every
    kept settle of every Budget; what is left stays in its spool directory."""
    with _LIVE_LOCK:
        spools = list(_LIVE)
    if not spools:
        return
    for spool in spools:
        if spool.retrier is not None:
            spool.retrier.halt()
    deadline = time.monotonic() + max(min(s.settings.timeout, EXIT_FLUSH_SECONDS) for s in spools)
    for spool in spools:
        try:
            spool.flush_blocking(deadline)
        except Exception:
            log.exception("budgetd: sending the kept settles at exit failed")
        spool.report_left("at exit")


atexit.register(flush_at_exit)

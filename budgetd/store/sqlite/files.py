"""The SQLite store's file: its path in the URL, one daemon owning it, and
how a file deleted or replaced under the daemon is told apart from the one
it opened (its device and inode)."""

from __future__ import annotations

import fcntl
import os
from typing import IO
from urllib.parse import parse_qs

from ..model import StoreError, StoreLost


def sqlite_path(url: str) -> tuple[str, dict[str, str]]:
    """``sqlite:///var/lib/budgetd/budgetd.db`` -> ``/var/lib/budgetd/budgetd.db``;
    ``sqlite://relative.db`` is relative to the working directory. Also the
    URL's query options."""
    rest = url[len("sqlite://") :]
    path, _, query = rest.partition("?")
    return path, {k: v[-1] for k, v in parse_qs(query).items()}


def identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of a file; None if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def own_exclusively(path: str) -> IO[str]:
    """One daemon owns the file: a second one fails here, clearly, instead of
    becoming a second writer. The lock lasts while the returned file is open."""
    lock = open(f"{path}.lock", "w")  # noqa: SIM115 - held open for the store's lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise StoreError(f"{path} is in use by another budgetd (lock {path}.lock is held)") from None
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def lost(path: str, opened_as: tuple[int, int] | None, inode_now: int | None) -> StoreLost:
    what = "deleted" if inode_now is None else f"replaced (inode {inode_now} there now)"
    opened_inode = opened_as[1] if opened_as is not None else None
    return StoreLost(
        f"the SQLite file {os.path.abspath(path)} was deleted or replaced while budgetd was running "
        f"(opened as inode {opened_inode}; {what}); refusing writes so nothing more is acknowledged into "
        "a file that no longer exists")

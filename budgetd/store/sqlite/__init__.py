"""The embedded store: one SQLite file owned by one daemon.

WAL mode with synchronous=NORMAL: a committed transaction survives a crash
of the process (kill -9); the last commits may roll back on power loss
(use ``?synchronous=full`` in the URL to fsync every commit). Every
operation runs inside a group-commit transaction (batching.py), so each is
atomic and acknowledged only after COMMIT. Under NORMAL, holds, settles and
status reads run on the event loop, everything else on aiosqlite's
connection thread.

The file is checked after every transaction, before anyone is answered: it
must still be the file opened (the device and inode of its path, taken at
open). Once it was deleted or replaced, every operation raises StoreLost
until the store is opened again (a commit into a deleted file "succeeds"
into an inode nothing will read again). One os.stat per batch, a couple of
microseconds; ping also checks the -wal file (the commits since the last
checkpoint live there).

The modules: store.py (the Store: lifecycle, file checks, each step handed
to the committer), schema.py (tables and migrations), batching.py (group
commit), files.py (the file: path, lock, identity), and the steps as plain
functions of a connection: calls.py (hold, settle, release, expire),
pauses.py, reads.py, ledger.py, outbox.py, reconciliations.py.
"""

from .schema import SCHEMA_VERSION
from .store import SqliteStore

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

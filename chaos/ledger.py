"""The chaos runs' FIFO deduplication ledger: which deduplication ids reached the queue, and when.

Faults made up on the client (`outbox.testing.faults`) must keep a rule SQS itself keeps: a resend of an id
SQS accepted less than 5 minutes ago is accepted again (and dropped), never failed. Relays in other
processes share this ledger through a SQLite file. Dev-only: it never ships.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from outbox.testing.faults import SQS_DEDUPLICATION_SECONDS


class DedupLedger:
    """FIFO deduplication ids that reached the queue, and when: a SQLite file, so that relays in other
    processes share it. Like SQS, an id's window starts at its first accepted send and a send after the
    window starts a new one."""

    def __init__(self, path: Path, *, window_seconds: float = SQS_DEDUPLICATION_SECONDS) -> None:
        self.path = path
        self.window_seconds = window_seconds
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS sent (id TEXT PRIMARY KEY, at REAL NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS spared (at REAL NOT NULL)")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """One connection per use, committed and closed: safe from any thread or process."""
        with closing(sqlite3.connect(self.path, timeout=60)) as db, db:
            yield db

    def record(self, ids: Iterable[str], *, now: float | None = None) -> None:
        at = time.time() if now is None else now
        with self._db() as db:
            db.executemany(
                "INSERT INTO sent VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at "
                "WHERE sent.at < excluded.at - ?",
                [(dedup_id, at, self.window_seconds) for dedup_id in ids],
            )

    def any_within_window(self, ids: Iterable[str], *, now: float | None = None) -> bool:
        wanted = list(ids)
        if not wanted:
            return False
        since = (time.time() if now is None else now) - self.window_seconds
        marks = ",".join("?" * len(wanted))
        with self._db() as db:
            query = f"SELECT 1 FROM sent WHERE at > ? AND id IN ({marks}) LIMIT 1"  # noqa: S608 - only "?"s
            return db.execute(query, [since, *wanted]).fetchone() is not None

    def note_spared(self) -> None:
        with self._db() as db:
            db.execute("INSERT INTO spared VALUES (?)", (time.time(),))

    def spared(self) -> int:
        """Entry faults not injected because SQS would have accepted (and dropped) the resend."""
        with self._db() as db:
            return int(db.execute("SELECT COUNT(*) FROM spared").fetchone()[0])

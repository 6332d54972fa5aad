"""The durable spool: received instances as files, every study's and export's state in SQLite (WAL).

An instance is on disk (written to a temporary name, fsynced, renamed, directory fsynced) and its row
committed before the C-STORE response or STOW-RS answer says it was stored, so a crash after that loses
nothing. Every state change is one transaction, so a restarted gateway resumes each study where it was.

Study states: receiving -> pending (complete; waiting for, or being, dispatched) -> dispatched (SR in the
spool, exports queued) -> exported (every destination has it); failed (the InferenceService refused the study:
a 4xx); dead_letter (an export gave up after EXPORT_MAX_ATTEMPTS). An instance arriving for a study past
`receiving` opens a new generation: the study is received again and re-run, and the new SR supersedes the
earlier one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STATES = ("receiving", "pending", "dispatched", "exported", "failed", "dead_letter")

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    id INTEGER PRIMARY KEY,
    called_ae TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    state TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 1,
    complete_now INTEGER NOT NULL DEFAULT 0,
    first_received REAL NOT NULL,
    last_received REAL NOT NULL,
    dispatch_attempts INTEGER NOT NULL DEFAULT 0,
    next_dispatch_at REAL NOT NULL DEFAULT 0,
    completed_at REAL,
    last_error TEXT,
    UNIQUE (called_ae, study_uid)
);
CREATE TABLE IF NOT EXISTS instances (
    study_id INTEGER NOT NULL REFERENCES studies(id),
    sop_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    laterality TEXT NOT NULL DEFAULT '',
    view TEXT NOT NULL DEFAULT '',
    received_at REAL NOT NULL,
    PRIMARY KEY (study_id, sop_uid)
);
CREATE TABLE IF NOT EXISTS exports (
    id INTEGER PRIMARY KEY,
    study_id INTEGER NOT NULL REFERENCES studies(id),
    generation INTEGER NOT NULL,
    destination TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    delivered_at REAL,
    last_error TEXT,
    UNIQUE (study_id, generation, destination, kind)
);
CREATE INDEX IF NOT EXISTS studies_state ON studies(state);
CREATE INDEX IF NOT EXISTS exports_state ON exports(state);
"""


class SpoolFull(Exception):
    """Storing this instance would pass the study size limit or the spool quota (DIMSE status 0xA700)."""


@dataclass(frozen=True)
class Received:
    """What happened to one received instance."""

    study_id: int
    stored: bool  # False: a duplicate SOP Instance UID of this study, already in the spool
    reopened: bool  # True: the study had been completed; this instance starts a re-run


@dataclass(frozen=True)
class Study:
    id: int
    called_ae: str
    study_uid: str
    state: str
    generation: int
    complete_now: bool
    first_received: float
    last_received: float
    dispatch_attempts: int
    next_dispatch_at: float
    completed_at: float | None
    last_error: str | None


@dataclass(frozen=True)
class Instance:
    sop_uid: str
    path: Path
    bytes: int
    laterality: str
    view: str
    received_at: float


@dataclass(frozen=True)
class Export:
    id: int
    study_id: int
    generation: int
    destination: str
    kind: str
    path: Path
    sop_uid: str
    attempts: int
    state: str
    last_error: str | None


def uid_key(uid: str) -> str:
    """A short, stable, non-reversible name for a UID (file names and log lines)."""
    return hashlib.sha256(uid.encode()).hexdigest()[:16]


def write_durably(path: Path, data: bytes) -> None:
    """Write `data` so that after this returns it survives a crash or power loss: temporary file, fsync,
    rename, fsync of the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def move_durably(source: Path, path: Path) -> None:
    """Move `source` (on the same file system) to `path` so that it survives a crash: fsync, rename, fsync of
    the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(source, path)
    _fsync_folder(path.parent)


class Spool:
    """The spool folder and its SQLite database; safe to use from several threads."""

    def __init__(self, folder: Path, max_study_bytes: int, quota_bytes: int) -> None:
        self.folder = folder
        self.max_study_bytes = max_study_bytes
        self.quota_bytes = quota_bytes
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(folder / "spool.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._reserved = 0  # bytes being written right now (admitted, not yet committed)
        self._clean_temporaries()

    @property
    def incoming(self) -> Path:
        """Where instances are received before they are stored (same file system as the spool)."""
        return self.folder / "incoming"

    def _clean_temporaries(self) -> None:
        # Left by a crash between write and rename, or by an association aborted mid-transfer: never
        # acknowledged, so the sender sends them again.
        for leftover in self.folder.glob("**/.*.tmp"):
            leftover.unlink(missing_ok=True)
        self.incoming.mkdir(parents=True, exist_ok=True)
        for leftover in self.incoming.iterdir():
            leftover.unlink(missing_ok=True)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- receiving ---------------------------------------------------------------------------------
    def used_bytes(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT (SELECT COALESCE(SUM(bytes), 0) FROM instances)"
                " + (SELECT COALESCE(SUM(bytes), 0) FROM (SELECT DISTINCT path, bytes FROM exports))"
            ).fetchone()
            return int(row[0]) + self._reserved

    def store_instance(
        self,
        called_ae: str,
        study_uid: str,
        sop_uid: str,
        data: bytes | Path,
        laterality: str = "",
        view: str = "",
        complete_now: bool = False,
    ) -> Received:
        """Durably store one instance of study (called_ae, study_uid): its Part 10 bytes, or a Part 10 file in
        the spool's `incoming` folder (moved, not copied). A duplicate SOP Instance UID is not stored again.
        Raises SpoolFull past the study size limit or the spool quota."""
        now = time.time()
        size = data.stat().st_size if isinstance(data, Path) else len(data)
        with self._lock:
            row = self._db.execute(
                "SELECT s.id, (SELECT COUNT(*) FROM instances i WHERE i.study_id = s.id AND i.sop_uid = ?),"
                " (SELECT COALESCE(SUM(bytes), 0) FROM instances i WHERE i.study_id = s.id)"
                " FROM studies s WHERE s.called_ae = ? AND s.study_uid = ?",
                (sop_uid, called_ae, study_uid),
            ).fetchone()
            if row is not None and row[1]:
                return Received(row[0], stored=False, reopened=False)
            study_bytes = row[2] if row is not None else 0
            if study_bytes + size > self.max_study_bytes:
                raise SpoolFull(
                    f"the study would exceed the study size limit of {self.max_study_bytes} bytes"
                )
            if self.used_bytes() + size > self.quota_bytes:
                raise SpoolFull(f"the spool quota of {self.quota_bytes} bytes is reached")
            self._reserved += size
        try:
            path = self.folder / "instances" / uid_key(f"{called_ae}|{study_uid}") / f"{uid_key(sop_uid)}.dcm"
            if isinstance(data, Path):
                move_durably(data, path)
            else:
                write_durably(path, data)
            with self._transaction() as db:
                row = db.execute(
                    "SELECT id, state FROM studies WHERE called_ae = ? AND study_uid = ?",
                    (called_ae, study_uid),
                ).fetchone()
                if row is None:
                    study_id = db.execute(
                        "INSERT INTO studies (called_ae, study_uid, state, first_received, last_received)"
                        " VALUES (?, ?, 'receiving', ?, ?)",
                        (called_ae, study_uid, now, now),
                    ).lastrowid
                    state = "receiving"
                else:
                    study_id, state = row["id"], row["state"]
                inserted = db.execute(
                    "INSERT OR IGNORE INTO instances (study_id, sop_uid, path, bytes, laterality, view, "
                    "received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (study_id, sop_uid, str(path.relative_to(self.folder)), size, laterality, view, now),
                ).rowcount
                reopened = bool(inserted) and state != "receiving"
                if inserted:
                    db.execute(
                        "UPDATE studies SET last_received = ?, complete_now = (complete_now AND ?) OR ?,"
                        " state = 'receiving', generation = generation + ?, dispatch_attempts = 0,"
                        " next_dispatch_at = 0, last_error = NULL WHERE id = ?",
                        (now, int(not reopened), int(complete_now), int(reopened), study_id),
                    )
        finally:
            with self._lock:
                self._reserved -= size
        return Received(study_id, stored=bool(inserted), reopened=reopened)

    def mark_complete_now(self, study_id: int) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE studies SET complete_now = 1 WHERE id = ? AND state = 'receiving'", (study_id,)
            )

    # --- queries -----------------------------------------------------------------------------------
    def study(self, study_id: int) -> Study | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM studies WHERE id = ?", (study_id,)).fetchone()
        return _study(row) if row else None

    def studies(self, states: tuple[str, ...] = STATES, limit: int = 1000) -> list[Study]:
        marks = ",".join("?" * len(states))
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM studies WHERE state IN ({marks}) ORDER BY id LIMIT ?", (*states, limit)
            ).fetchall()
        return [_study(row) for row in rows]

    def study_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM studies GROUP BY state").fetchall()
        counts = dict.fromkeys(STATES, 0)
        counts.update({row[0]: row[1] for row in rows})
        return counts

    def instances(self, study_id: int) -> list[Instance]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM instances WHERE study_id = ? ORDER BY received_at", (study_id,)
            ).fetchall()
        return [
            Instance(
                row["sop_uid"],
                self.folder / row["path"],
                row["bytes"],
                row["laterality"],
                row["view"],
                row["received_at"],
            )
            for row in rows
        ]

    def exports(self, study_id: int) -> list[Export]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM exports WHERE study_id = ? ORDER BY id", (study_id,)
            ).fetchall()
        return [_export(row, self.folder) for row in rows]

    def due_exports(self, now: float, limit: int = 100) -> list[Export]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM exports WHERE state = 'queued' AND next_attempt_at <= ? ORDER BY "
                "next_attempt_at"
                " LIMIT ?",
                (now, limit),
            ).fetchall()
        return [_export(row, self.folder) for row in rows]

    # --- state changes -----------------------------------------------------------------------------
    def complete(self, study_id: int, generation: int) -> bool:
        """receiving -> pending, unless an instance arrived meanwhile (a new generation)."""
        with self._transaction() as db:
            return (
                db.execute(
                    "UPDATE studies SET state = 'pending', completed_at = ? WHERE id = ? AND state = "
                    "'receiving'"
                    " AND generation = ?",
                    (time.time(), study_id, generation),
                ).rowcount
                == 1
            )

    def dispatch_retry(self, study_id: int, generation: int, delay_s: float, error: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE studies SET dispatch_attempts = dispatch_attempts + 1, next_dispatch_at = ?, "
                "last_error = ?"
                " WHERE id = ? AND state = 'pending' AND generation = ?",
                (time.time() + delay_s, error[:500], study_id, generation),
            )

    def dispatch_failed(self, study_id: int, generation: int, error: str) -> bool:
        with self._transaction() as db:
            return (
                db.execute(
                    "UPDATE studies SET state = 'failed', last_error = ? WHERE id = ? AND state = 'pending'"
                    " AND generation = ?",
                    (error[:500], study_id, generation),
                ).rowcount
                == 1
            )

    def store_result(
        self, study_id: int, generation: int, results: dict[str, tuple[str, bytes]], destinations: list[str]
    ) -> bool:
        """Keep the inference results (kind -> (SOP Instance UID, Part 10 bytes)) and queue one export per
        destination and kind, in one transaction; pending -> dispatched (exported when there is nowhere to
        send). False (nothing kept) when an instance arrived meanwhile: the new generation runs again."""
        paths = {}
        for kind, (sop_uid, data) in results.items():
            paths[kind] = (
                self.folder / "results" / str(study_id) / f"{generation}-{kind}-{uid_key(sop_uid)}.dcm"
            )
            write_durably(paths[kind], data)
        now = time.time()
        with self._transaction() as db:
            current = db.execute("SELECT state, generation FROM studies WHERE id = ?", (study_id,)).fetchone()
            if current["state"] != "pending" or current["generation"] != generation:
                return False
            # An earlier generation's result not delivered yet is superseded by this one.
            db.execute(
                "UPDATE exports SET state = 'superseded' WHERE study_id = ? AND state = 'queued'", (study_id,)
            )
            for destination in destinations:
                for kind, (sop_uid, data) in results.items():
                    db.execute(
                        "INSERT OR IGNORE INTO exports (study_id, generation, destination, kind, path, "
                        "sop_uid,"
                        " bytes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            study_id,
                            generation,
                            destination,
                            kind,
                            str(paths[kind].relative_to(self.folder)),
                            sop_uid,
                            len(data),
                            now,
                        ),
                    )
            state = "dispatched" if destinations else "exported"
            db.execute("UPDATE studies SET state = ?, last_error = NULL WHERE id = ?", (state, study_id))
        return True

    def export_delivered(self, export_id: int) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE exports SET state = 'delivered', delivered_at = ?, attempts = attempts + 1,"
                " last_error = NULL WHERE id = ? AND state = 'queued'",
                (time.time(), export_id),
            )
            self._settle(db, export_id)

    def export_retry(self, export_id: int, delay_s: float, error: str, max_attempts: int) -> bool:
        """One more failed attempt: retried after `delay_s`, or dead-lettered at `max_attempts`.
        True when dead-lettered."""
        with self._transaction() as db:
            row = db.execute("SELECT attempts FROM exports WHERE id = ?", (export_id,)).fetchone()
            dead = row["attempts"] + 1 >= max_attempts
            db.execute(
                "UPDATE exports SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, state = ?"
                " WHERE id = ? AND state = 'queued'",
                (time.time() + delay_s, error[:500], "dead_letter" if dead else "queued", export_id),
            )
            self._settle(db, export_id)
        return dead

    @staticmethod
    def _settle(db: sqlite3.Connection, export_id: int) -> None:
        """The study's state from its current generation's exports: exported when all are delivered,
        dead_letter when one gave up."""
        row = db.execute("SELECT study_id, generation FROM exports WHERE id = ?", (export_id,)).fetchone()
        states = {
            r[0]
            for r in db.execute(
                "SELECT state FROM exports WHERE study_id = ? AND generation = ?",
                (row["study_id"], row["generation"]),
            )
        }
        study_state = (
            "dead_letter" if "dead_letter" in states else "exported" if states == {"delivered"} else None
        )
        if study_state:
            db.execute(
                "UPDATE studies SET state = ? WHERE id = ? AND state = 'dispatched' AND generation = ?",
                (study_state, row["study_id"], row["generation"]),
            )

    def purge_exported(self, older_than: float) -> int:
        """Forget studies exported whose last instance arrived before `older_than` (a time): their files and
        rows. An instance of such a study arriving later starts a new study. The number purged."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, called_ae, study_uid FROM studies WHERE state = 'exported' AND last_received < ?",
                (older_than,),
            ).fetchall()
        for row in rows:
            with self._transaction() as db:
                for table in ("instances", "exports"):
                    db.execute(f"DELETE FROM {table} WHERE study_id = ?", (row["id"],))
                db.execute("DELETE FROM studies WHERE id = ?", (row["id"],))
            # Files go after the rows: a crash in between leaves files no row points to, never the reverse.
            for folder in (
                self.folder / "instances" / uid_key(f"{row['called_ae']}|{row['study_uid']}"),
                self.folder / "results" / str(row["id"]),
            ):
                shutil.rmtree(folder, ignore_errors=True)
        return len(rows)

    def retry(self, study_id: int) -> str | None:
        """Operator's retry: a failed study is dispatched again; a dead-lettered one's exports are queued
        again (with the same SR). The new state, or None when the study is neither failed nor
        dead-lettered."""
        with self._transaction() as db:
            row = db.execute("SELECT state, generation FROM studies WHERE id = ?", (study_id,)).fetchone()
            if row is None:
                return None
            if row["state"] == "failed":
                db.execute(
                    "UPDATE studies SET state = 'pending', dispatch_attempts = 0, next_dispatch_at = 0"
                    " WHERE id = ?",
                    (study_id,),
                )
                return "pending"
            if row["state"] == "dead_letter":
                db.execute(
                    "UPDATE exports SET state = 'queued', attempts = 0, next_attempt_at = 0"
                    " WHERE study_id = ? AND generation = ? AND state = 'dead_letter'",
                    (study_id, row["generation"]),
                )
                db.execute("UPDATE studies SET state = 'dispatched' WHERE id = ?", (study_id,))
                return "dispatched"
        return None


def _study(row: sqlite3.Row) -> Study:
    return Study(
        row["id"],
        row["called_ae"],
        row["study_uid"],
        row["state"],
        row["generation"],
        bool(row["complete_now"]),
        row["first_received"],
        row["last_received"],
        row["dispatch_attempts"],
        row["next_dispatch_at"],
        row["completed_at"],
        row["last_error"],
    )


def _export(row: sqlite3.Row, folder: Path) -> Export:
    return Export(
        row["id"],
        row["study_id"],
        row["generation"],
        row["destination"],
        row["kind"],
        folder / row["path"],
        row["sop_uid"],
        row["attempts"],
        row["state"],
        row["last_error"],
    )

"""The SQLite record of every generated image (``<data-dir>/history.sqlite3``).

One row per image: task, time, prompts, the image's full infotext, seed, model, size, sampler and
the path of the saved file. The store is one object built at start-up and passed in; it is called
from the job worker thread and from UI/API threads at once, so every statement runs under one lock
on one connection (history traffic is a few rows per job, never worth a connection per thread).
The database is in WAL mode with a busy timeout, so a second Easel process on the same data folder
waits instead of failing.

Order of saving, so the history never points at a missing file: the image is written to a
temporary name, renamed into place (modules/outputs.py), and only then recorded here.
:meth:`HistoryStore.record` refuses an entry whose ``path`` does not exist yet. A crash between the rename and the record
loses the row, never leaves a dangling one; a file deleted by hand later is cleaned up by
:meth:`HistoryStore.prune_missing`.

A database that SQLite calls corrupt or not-a-database (random bytes, a truncated file) does not
stop Easel: it is moved aside to ``<name>.corrupt-<timestamp>`` with a warning and a fresh one is
started. The schema version lives in ``PRAGMA user_version``; :data:`MIGRATIONS` holds one step per
version and opening an older file runs the missing steps in order.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
from dataclasses import astuple, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

from modules.errors import UserError
from modules.files import move_aside

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 10.0
_HASH = re.compile(r"^[0-9a-f]{10}$")
_TITLE = re.compile(r"^(.*\S)\s+\[([0-9a-fA-F]{1,64})\]$")  # A1111 checkpoint title "name [hash]"
_CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


class HistoryNotFoundError(UserError):
    """No history entry has the requested id."""


class HistorySchemaError(UserError):
    """The history database was written by a newer Easel than this one."""


@dataclass(frozen=True)
class HistoryEntry:
    """One generated image, as recorded."""

    task: str  # "txt2img", "img2img", ...
    created_at: float  # seconds since the epoch
    duration_s: float  # time the job took to make this image's batch
    prompt: str
    negative_prompt: str
    params: str  # the image's full infotext, exactly as written into the file
    seed: int
    model_name: str
    model_hash: str | None  # A1111 short hash: 10 lowercase hex digits
    path: str | None  # the saved file; None when the image was not saved
    width: int
    height: int
    sampler: str


@dataclass(frozen=True, kw_only=True)
class HistoryRow(HistoryEntry):
    """A recorded entry with its row id (ids are never reused, even after a delete)."""

    id: int


_ENTRY_COLUMNS = tuple(f.name for f in fields(HistoryEntry))
_ROW_COLUMNS = ("id",) + _ENTRY_COLUMNS


def _schema_v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            task TEXT NOT NULL,
            created_at REAL NOT NULL,
            duration_s REAL NOT NULL,
            prompt TEXT NOT NULL,
            negative_prompt TEXT NOT NULL,
            params TEXT NOT NULL,
            seed INTEGER NOT NULL,
            model_name TEXT NOT NULL,
            model_hash TEXT,
            path TEXT,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            sampler TEXT NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX history_created ON history (created_at DESC, id DESC)")


# MIGRATIONS[i] takes a database from schema version i to i + 1. Append; never edit a shipped step.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_schema_v1,)


def escape_like(text: str) -> str:
    """``text`` with LIKE's wildcards (``%``, ``_``) and the escape character made literal
    (use with ``ESCAPE '\\'``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class _FailedCheck(sqlite3.DatabaseError):
    """PRAGMA quick_check found damage that reading the header did not."""


def _is_corrupt(error: sqlite3.DatabaseError) -> bool:
    # "locked" or "unable to open" are also DatabaseErrors; only these mean the bytes are bad.
    return isinstance(error, _FailedCheck) or getattr(error, "sqlite_errorcode", None) in _CORRUPT_CODES


class HistoryStore:
    """The generation history in one SQLite file; safe to call from any thread.

    ``outputs_root``: the only folder whose files :meth:`delete` may remove (None: never remove
    files). ``migrations``: the schema steps, :data:`MIGRATIONS` unless a test gives others.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        outputs_root: str | os.PathLike[str] | None = None,
        migrations: Sequence[Callable[[sqlite3.Connection], None]] = MIGRATIONS,
    ):
        self.path = Path(path)
        self.outputs_root = Path(outputs_root).resolve() if outputs_root is not None else None
        self._migrations = tuple(migrations)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._open()

    # -- opening -------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit; multi-statement writes use explicit BEGIN/COMMIT.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.create_function("easel_fold", 1, lambda s: s.casefold() if isinstance(s, str) else s, deterministic=True)
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Checks the file, switches to WAL and brings the schema up to date."""
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise _FailedCheck(f"quick_check: {'; '.join(problems[:3])}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            log.warning("History database %s stays in %s journal mode (WAL not supported here).", self.path, mode)
        conn.execute("PRAGMA synchronous=NORMAL")
        self._migrate(conn)

    def _open(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            self._prepare(conn)
            return conn
        except sqlite3.DatabaseError as error:
            conn.close()
            if not _is_corrupt(error):
                raise
            aside = move_aside(self.path, f".corrupt-{datetime.now():%Y%m%d-%H%M%S}")  # earlier ones kept
            log.warning(
                "The history database %s is damaged (%s); moved it to %s and started a new, empty history.",
                self.path, error, aside.name,
            )
            for suffix in ("-wal", "-shm"):  # a stale WAL must not be replayed into the new file
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    os.replace(side, aside.with_name(aside.name + suffix))
        conn = self._connect()
        self._prepare(conn)
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        target = len(self._migrations)
        if version > target:
            raise HistorySchemaError(
                f"{self.path} was written by a newer Easel (history schema {version}, this one knows {target}). "
                "Update Easel, or move the file away to start a new history."
            )
        for step in range(version, target):
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._migrations[step](conn)
                conn.execute(f"PRAGMA user_version = {step + 1}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            log.info("History database %s migrated to schema %d.", self.path, step + 1)

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._conn.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------

    def record(self, entry: HistoryEntry) -> int:
        """Stores one image and returns its row id. A set ``path`` must already exist: record
        after the file is renamed into place (see the module docstring)."""
        if entry.model_hash is not None and not _HASH.match(entry.model_hash.lower()):
            raise ValueError(f"model_hash must be 10 hex digits or None, not {entry.model_hash!r}")
        values = dict(zip(_ENTRY_COLUMNS, astuple(entry)))
        if entry.model_hash is not None:
            values["model_hash"] = entry.model_hash.lower()
        if entry.path is not None:
            if not os.path.isfile(entry.path):
                raise FileNotFoundError(f"History entries are recorded after the image is saved; {entry.path} does not exist.")
            values["path"] = os.path.abspath(entry.path)
        sql = f"INSERT INTO history ({', '.join(_ENTRY_COLUMNS)}) VALUES ({', '.join('?' * len(_ENTRY_COLUMNS))})"
        with self._lock:
            row_id = self._conn.execute(sql, tuple(values.values())).lastrowid
        assert row_id is not None  # sqlite3 sets it after every INSERT
        return int(row_id)


    def delete(self, entry_id: int, delete_file: bool = False) -> bool:
        """Removes a row; False when there was none. With ``delete_file``, the image goes too, but
        only when it lies inside ``outputs_root`` (links resolved): other files are never touched."""
        row = self.get(entry_id)
        if row is None:
            return False
        if delete_file and row.path is not None:
            self._delete_file(Path(row.path))
        with self._lock:
            self._conn.execute("DELETE FROM history WHERE id = ?", (entry_id,))
        return True

    def _delete_file(self, path: Path) -> None:
        resolved = path.resolve()
        if self.outputs_root is None or not resolved.is_relative_to(self.outputs_root) or resolved == self.outputs_root:
            log.warning("Kept %s: history only deletes files inside the outputs folder %s.", path, self.outputs_root)
            return
        try:
            resolved.unlink(missing_ok=True)
        except OSError as error:  # the row stays, so it still points at the file that is still there
            raise UserError(f"Could not delete {path}: {error.strerror or error}. Check the file's permissions.") from error

    def prune_missing(self) -> int:
        """Removes rows whose saved file no longer exists (rows without a file stay); returns how many."""
        with self._lock:
            rows = self._conn.execute("SELECT id, path FROM history WHERE path IS NOT NULL").fetchall()
        missing = [(entry_id,) for entry_id, path in rows if not os.path.exists(path)]
        if missing:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany("DELETE FROM history WHERE id = ?", missing)
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
            log.info("History: removed %d entries whose image file is gone.", len(missing))
        return len(missing)

    # -- reading -------------------------------------------------------------------------------

    def get(self, entry_id: int) -> HistoryRow | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {', '.join(_ROW_COLUMNS)} FROM history WHERE id = ?", (entry_id,)).fetchone()
        return None if row is None else HistoryRow(**dict(zip(_ROW_COLUMNS, row)))

    def export_infotext(self, entry_id: int) -> str:
        """The stored infotext of an entry (what PNG Info would read from the image)."""
        row = self.get(entry_id)
        if row is None:
            raise HistoryNotFoundError(f"There is no history entry {entry_id}; it may have been deleted.")
        return row.params

    def search(
        self,
        text: str = "",
        model: str = "",
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[HistoryRow]:
        """Entries newest first. ``text``: a case-insensitive substring of the prompt or negative
        prompt (``%`` and ``_`` are literal). ``model``: a model name (case-insensitive), an A1111
        title ``name [hash]``, or the start of a model hash. ``since`` <= created_at < ``until``."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        where, params = self._filters(text, model, since, until)
        sql = (
            f"SELECT {', '.join(_ROW_COLUMNS)} FROM history{where} "
            "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
        )
        with self._lock:
            rows = self._conn.execute(sql, (*params, limit, offset)).fetchall()
        return [HistoryRow(**dict(zip(_ROW_COLUMNS, row))) for row in rows]

    def count(self, text: str = "", model: str = "", since: float | None = None, until: float | None = None) -> int:
        """How many entries :meth:`search` would find without a limit (for paging)."""
        where, params = self._filters(text, model, since, until)
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM history{where}", params).fetchone()[0])

    @staticmethod
    def _filters(text: str, model: str, since: float | None, until: float | None) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        if text:
            # easel_fold (str.casefold) because SQLite's LIKE only folds ASCII letters.
            pattern = f"%{escape_like(text.casefold())}%"
            clauses.append("(easel_fold(prompt) LIKE ? ESCAPE '\\' OR easel_fold(negative_prompt) LIKE ? ESCAPE '\\')")
            params += [pattern, pattern]
        model = model.strip()
        if model:
            names, hashes = [model], [model]
            title = _TITLE.match(model)
            if title:
                names.append(title.group(1))
                hashes.append(title.group(2))
            clauses.append(
                "(" + " OR ".join(["model_name = ? COLLATE NOCASE"] * len(names) + ["model_hash LIKE ? ESCAPE '\\'"] * len(hashes)) + ")"
            )
            params += names + [f"{escape_like(h.lower())}%" for h in hashes]
        if since is not None:
            clauses.append("created_at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("created_at < ?")
            params.append(until)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

"""A result cache for proxy training, so the same evaluation is never paid twice.

One SQLite file (WAL mode): each `put` is one transaction, so a crash never loses entries
already written, and concurrent processes serialise on SQLite's lock instead of
corrupting a shared file. Keys hash (spec, dataset fingerprint, fidelity, seed, trainer
version); values are the result as JSON.

A cache that cannot be written (a full disk, a read-only folder, a damaged file) is not an
error: a result is as correct uncached, and a search left running overnight must not die
because ~/.cache filled up. It warns once (CacheWarning, naming the file and the reason) and
acts as an empty cache that keeps nothing; entries already stored are untouched.

>>> cache = ResultCache("/tmp/example-cache.sqlite")
>>> cache.put("k", {"top1": 0.9})
>>> cache.get("k")
{'top1': 0.9}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any

from ..atomic import check_writable

__all__ = ["CacheWarning", "ResultCache", "default_cache_path", "result_key"]

# Another process may hold the write lock for one short transaction: wait, do not fail.
LOCK_TIMEOUT_S = 60.0


class CacheWarning(UserWarning):
    """The cache cannot be used: results stay correct, they are only not kept for next time."""


def default_cache_path() -> Path:
    """$XDG_CACHE_HOME/shufflesearch/proxy-results.sqlite (else ~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "shufflesearch" / "proxy-results.sqlite"


def result_key(spec: Any, dataset_fingerprint: str, fidelity: Any, seed: int, version: int) -> str:
    """A stable hex key for one evaluation: equal inputs give equal keys across processes."""
    payload = {
        "spec": spec.to_dict(),
        "dataset": dataset_fingerprint,
        "fidelity": fidelity.to_dict(),
        "seed": seed,
        "trainer_version": version,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class ResultCache:
    """Key -> JSON-able dict, persisted in SQLite; safe across threads and processes."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self._warned = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(self._connect()) as db, db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)"
                )
        except (OSError, sqlite3.Error) as exc:
            self._cannot_use(exc)

    def _connect(self) -> sqlite3.Connection:
        # A fresh connection per call: cheap, and safe to share the object across threads/forks.
        return sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S)

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value, or None (also when the cache cannot be read: a miss costs time, not correctness)."""
        try:
            with contextlib.closing(self._connect()) as db:
                row = db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            self._cannot_use(exc)
            return None
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store `value` in one transaction (whole or not at all); a write that fails only warns."""
        text = json.dumps(value, sort_keys=True, allow_nan=False)
        try:
            with contextlib.closing(self._connect()) as db, db:
                db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", (key, text, time.time()))
        except sqlite3.Error as exc:
            self._cannot_use(exc)

    def __len__(self) -> int:
        with contextlib.closing(self._connect()) as db:
            return int(db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def _cannot_use(self, exc: Exception) -> None:
        if self._warned:
            return
        self._warned = True
        warnings.warn(
            f"proxy-result cache {self.path} cannot be used ({_reason(exc, self.path.parent)}); training goes on "
            "without it (results stay correct, they are only not kept): free space there, or set XDG_CACHE_HOME "
            "to a writable folder",
            CacheWarning,
            stacklevel=3,
        )


def _reason(exc: Exception, folder: Path) -> str:
    """What went wrong in plain words: SQLite says only "unable to open database file" or "disk I/O error"."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    try:
        check_writable(folder)
    except OSError as probe:
        return probe.strerror or str(probe)
    return " ".join(str(exc).split())

"""A result cache for proxy training, so the same evaluation is never paid twice.

One SQLite file (WAL mode): each `put` is one transaction, so a crash never loses entries
already written, and concurrent processes serialise on SQLite's lock instead of
corrupting a shared file. Keys hash (spec, dataset fingerprint, fidelity, seed, trainer
version); values are the result as JSON.

>>> cache = ResultCache("/tmp/example-cache.sqlite")
>>> cache.put("k", {"top1": 0.9})
>>> cache.get("k")
{'top1': 0.9}
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

__all__ = ["CacheError", "ResultCache", "default_cache_path", "result_key"]

# Another process may hold the write lock for one short transaction: wait, do not fail.
LOCK_TIMEOUT_S = 60.0


class CacheError(ValueError):
    """A cache path that cannot be used: the message names the path and the fix."""


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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)"
                )
        except (OSError, sqlite3.DatabaseError) as exc:
            raise CacheError(f"cache {self.path} cannot be opened ({exc}); pass a writable --cache-dir") from None

    def _connect(self) -> sqlite3.Connection:
        # A fresh connection per call: cheap, and safe to share the object across threads/forks.
        return sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S)

    def get(self, key: str) -> dict[str, Any] | None:
        db = self._connect()
        try:
            row = db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
        finally:
            db.close()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        text = json.dumps(value, sort_keys=True, allow_nan=False)
        db = self._connect()
        try:
            with db:  # one transaction: committed whole or not at all
                db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", (key, text, time.time()))
        finally:
            db.close()

    def __len__(self) -> int:
        db = self._connect()
        try:
            return int(db.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        finally:
            db.close()

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

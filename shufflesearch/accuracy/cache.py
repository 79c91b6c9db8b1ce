"""A result cache for proxy training, so the same evaluation is never paid twice.

One SQLite file (WAL mode): each `put` is one transaction, so a crash never loses entries
already written, and concurrent processes serialise on SQLite's lock instead of
corrupting a shared file. Keys hash (spec, dataset fingerprint, fidelity, seed, trainer
version, and the device kind of a GPU run: see `result_key`); values are the result as JSON.

A cache that cannot be written (a full disk, a read-only folder, a damaged file) is not an
error: a result is as correct uncached, and a search left running overnight must not die
because ~/.cache filled up. It warns once (CacheWarning, naming the file and the reason) and
acts as an empty cache that keeps nothing; entries already stored are untouched. A damaged entry
(not JSON, or not the result it should be: `train_result.cached_result`) is a miss: it warns once
and the run that trains again overwrites it.

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
from ..cache_dir import cache_root

__all__ = ["CacheWarning", "ResultCache", "default_cache_path", "result_key"]

# Another process may hold the write lock for one short transaction: wait, do not fail.
LOCK_TIMEOUT_S = 60.0


class CacheWarning(UserWarning):
    """The cache cannot be used: results stay correct, they are only not kept for next time."""


def default_cache_path() -> Path:
    """$XDG_CACHE_HOME/shufflesearch/proxy-results.sqlite (else ~/.cache/...: `cache_dir.cache_root`)."""
    return cache_root() / "proxy-results.sqlite"


def result_key(spec: Any, dataset_fingerprint: str, fidelity: Any, seed: int, version: int, device: str = "cpu") -> str:
    """A stable hex key for one evaluation: equal inputs give equal keys across processes.

    The device enters by kind ("cuda", "mps"; a CPU run adds nothing, so CPU keys are the ones
    stored before devices existed): a GPU's kernels round differently from the CPU's, so a CPU
    result is never served for a GPU request or the other way round. GPUs of one kind share
    results, as CPUs of different models already do: they differ in the last bits, not in what
    a search learns. The precision is spelled as before it had a field (`bf16: true|false`,
    plus `precision` only for fp16), so stored fp32 and bf16 results keep their keys. Likewise a
    run scored on the test split leaves the split out: every result stored before splits had
    names was scored there, and keeps its key; a validation-scored run can never hit one.
    """
    from .recipe import recipe_key

    recipe = recipe_key(fidelity.to_dict())
    precision = recipe.pop("precision", "fp32")
    recipe["bf16"] = precision == "bf16"
    if precision not in ("fp32", "bf16"):
        recipe["precision"] = precision
    payload = {
        "spec": spec.to_dict(),
        "dataset": dataset_fingerprint,
        "fidelity": recipe,
        "seed": seed,
        "trainer_version": version,
    }
    kind = device.split(":", 1)[0]
    if kind != "cpu":
        payload["device"] = kind
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class ResultCache:
    """Key -> JSON-able dict, persisted in SQLite; safe across threads and processes."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self._warned = self._warned_damaged = False
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
        """The stored value, or None (also when the cache cannot be read: a miss costs time, not correctness).

        A stored value that is not a JSON object (or not finite JSON) is a miss too, with one warning.
        """
        try:
            with contextlib.closing(self._connect()) as db:
                row = db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
        except (sqlite3.Error, OverflowError, MemoryError) as exc:  # a damaged file or page, a huge row
            self._cannot_use(exc)
            return None
        if row is None:
            return None
        try:
            value = json.loads(row[0], parse_constant=_no_constant)
        except (TypeError, ValueError, RecursionError) as exc:  # NULL, a blob of junk, NaN, nesting too deep
            self.damaged(key, f"not JSON: {type(exc).__name__}")
            return None
        if not isinstance(value, dict):
            self.damaged(key, f"a JSON {type(value).__name__}, not an object")
            return None
        return value

    def damaged(self, key: str, reason: str) -> None:
        """Say once that an entry is damaged; the caller treats it as a miss, and its next `put` replaces it."""
        if self._warned_damaged:
            return
        self._warned_damaged = True
        warnings.warn(
            f"proxy-result cache {self.path}: entry {key[:12]} is damaged ({' '.join(reason.split())[:200]}); "
            "training again, and the new result replaces it",
            CacheWarning,
            stacklevel=3,
        )

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store `value` in one transaction (whole or not at all); a write that fails only warns."""
        text = json.dumps(value, sort_keys=True, allow_nan=False)
        try:
            with contextlib.closing(self._connect()) as db, db:
                db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", (key, text, time.time()))
        except sqlite3.Error as exc:
            self._cannot_use(exc)

    def __len__(self) -> int:
        """Entries stored (0 when the cache cannot be read)."""
        try:
            with contextlib.closing(self._connect()) as db:
                return int(db.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        except sqlite3.Error as exc:
            self._cannot_use(exc)
            return 0

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def _cannot_use(self, exc: Exception) -> None:
        if self._warned:
            return
        self._warned = True
        # A file SQLite cannot read as a database is damaged (or someone else's): space will not help.
        fix = ("delete it to start an empty cache" if isinstance(exc, sqlite3.DatabaseError)
               and not isinstance(exc, sqlite3.OperationalError) else "free space there")  # fmt: skip
        warnings.warn(
            f"proxy-result cache {self.path} cannot be used ({_reason(exc, self.path.parent)}); training goes on "
            f"without it (results stay correct, they are only not kept): {fix}, or set XDG_CACHE_HOME "
            "to a writable folder",
            CacheWarning,
            stacklevel=3,
        )


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # put() never writes NaN or Infinity


def _reason(exc: Exception, folder: Path) -> str:
    """What went wrong in plain words: SQLite says only "unable to open database file" or "disk I/O error"."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    try:
        check_writable(folder)
    except OSError as probe:
        return probe.strerror or str(probe)
    return " ".join(str(exc).split())

"""Where studies live: an embedded SQLite file by default, PostgreSQL for many machines.

Both are Optuna RDB storages, so both get heartbeats: a worker that dies mid-trial
(SIGKILL, power loss) stops beating, the next worker to look marks its trial FAIL, and
the retry callback queues the same parameters again, however often that happens: a
killed worker is not the trial's fault. A short claim lock (a file lock
beside the SQLite file, a PostgreSQL advisory lock on a server) makes "is there a trial
left to run?" and "take it" one step across processes and machines.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import sqlite3
import time
from pathlib import Path

from ..errors import MachineError, UsageError

HEARTBEAT_INTERVAL_S = 5  # override: SHUFFLESEARCH_HEARTBEAT_S (a dead worker is noticed after 4 beats)
OPTUNA_TABLES = {"studies", "trials", "version_info"}  # a study database has these (and more)
MAX_ERRORS = 3  # a trial whose evaluation raised this often is left failed: it would raise again


class StorageError(UsageError):
    """A storage URL we cannot use; the message says which forms work."""


class NoSuchStorage(StorageError):
    """A reader named an SQLite file that does not exist (or is empty): only a search creates one."""


class StorageUnavailable(MachineError):
    """A well-formed storage we cannot open (server down, wrong password, unwritable folder)."""


def redact(url: str) -> str:
    """The URL (or a driver's message) with every password replaced, safe for logs and reports.

    Covers user:pw@ (any user, even none), ?password=pw and libpq's password=pw form. A
    password may hold '/', '?' or '#' unencoded (SQLAlchemy reads it up to an '@'), so
    everything up to the token's last '@' goes: too much hidden beats one character shown.
    """
    url = re.sub(r"(://[^:/@\s]*):\S*@", r"\1:***@", url)
    return re.sub(r"(?i)\b(password|passwd)(\s*=\s*)('[^']*'|[^\s&#]*)", r"\1\2***", url)


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps, outermost first: Optuna and SQLAlchemy reword the driver's error."""
    chain = [exc]
    while len(chain) < 20 and (chain[-1].__cause__ or chain[-1].__context__) is not None:  # bounded: it could loop
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    return chain


def _host(url: str) -> str | None:
    """The host as SQLAlchemy (and so the driver) reads it."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).host
    except Exception:  # malformed: the connection attempt reports it
        return None


def sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def open_storage(url: str, create: bool = True):
    """An Optuna RDBStorage with heartbeats and retries of dead workers' trials.

    Readers (`studies list`, `report`, `--resume`) pass create=False: a mistyped path must
    say so, not leave an empty database (and its folders) behind.
    """
    import warnings

    import optuna
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    # Heartbeats have been "experimental" since Optuna 2.8; pinned to optuna>=5,<6 and tested here.
    warnings.filterwarnings("ignore", category=ExperimentalWarning)

    if not url.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
        raise StorageError(f"storage {redact(url)!r}: use sqlite:///path/to/study.db or postgresql://user@host/db")
    if sqlite_path(url) is None and "@" in (_host(url) or ""):  # a raw '@' in the password: the driver echoes the rest
        raise StorageError(f"storage {redact(url)}: more than one '@' before the host; write an '@' in the "
                           "password as %40")  # fmt: skip
    engine_kwargs: dict = {"pool_pre_ping": True}
    path = sqlite_path(url)
    if path is not None and set("%?#") & set(str(path)):  # URL syntax: SQLAlchemy and SQLite would open another file
        raise StorageError(f"SQLite path {path} holds '%', '?' or '#', which a database URL misreads; "
                           "rename that file or folder")  # fmt: skip
    if path is not None:
        # Wait for the writer instead of failing with "database is locked" (several local workers).
        engine_kwargs = {"connect_args": {"timeout": 120}}
        if not create:
            engine_kwargs = _reader_engine_kwargs(path)
    # Our progress view reports trial states; Optuna would log an interrupted trial with a traceback.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    interval = int(os.environ.get("SHUFFLESEARCH_HEARTBEAT_S", HEARTBEAT_INTERVAL_S))
    if path is not None and create:
        from ..atomic import check_writable

        path.parent.mkdir(parents=True, exist_ok=True)
        check_writable(path.parent)  # read-only or full: one line naming the folder, not sqlite's traceback
        try:
            if path.is_file():
                _refuse_foreign(path, _tables(str(path)))
            _use_wal(path)
        except sqlite3.Error as exc:  # a folder, or a file that is not a database
            raise StorageError(f"{path} is not a study database ({exc}); name a new or existing .db file") from None
    for attempt in range(5):
        try:
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=interval,
                grace_period=4 * interval,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=None),
                skip_table_creation=not create,  # a reader of an empty PostgreSQL database must not create tables
            )
        except Exception as exc:  # SQLAlchemy wraps driver errors; the first line says what failed
            # A missing table, not a missing database (a mistyped name must say so): no studies yet.
            if not create and re.search(
                r"UndefinedTable|relation \S+ does not exist|no such table",
                "\n".join(f"{type(e).__name__}: {e}" for e in _chain(exc)),
            ):
                raise NoSuchStorage(f"no studies in {redact(url)} yet; a search creates them "
                                    "(shufflesearch search STUDY_FILE --storage URL)") from None  # fmt: skip
            # Workers starting together on a fresh database race to create the schema: the loser retries.
            if attempt < 4 and re.search(
                r"already exists|duplicate key|UniqueViolation|UNIQUE constraint failed", str(exc)
            ):
                time.sleep(0.5 * (attempt + 1))
                continue
            root = _chain(exc)[-1]  # the driver's own words
            first = str(root).strip().splitlines()[0] if str(root).strip() else type(root).__name__
            fix = (
                ""
                if path is not None
                else "; check the host, that the server runs, and the URL (postgresql://user@host:5432/db)"
            )
            raise StorageUnavailable(f"cannot open storage {redact(url)}: {redact(first)}{fix}") from None
    raise AssertionError("unreachable")


def _reader_engine_kwargs(path: Path) -> dict:
    """How a reader connects to `path`, once it is known to hold studies.

    A reader changes nothing: not another program's SQLite file (Optuna would add its
    tables), not the journal mode. A folder this user cannot write needs a read-only
    connection, see `_read_only_uri`.
    """
    if not path.is_file():
        raise NoSuchStorage(f"no study database at {path}; a search creates it (shufflesearch search STUDY_FILE)")
    uri = _read_only_uri(path)
    try:
        tables = _tables(uri or str(path))
    except sqlite3.Error as exc:
        if uri and isinstance(exc, sqlite3.OperationalError):
            raise StorageError(f"cannot read {path}: SQLite must write its -shm file beside it and this folder is not "
                               "writable; copy the .db (and its -wal file) elsewhere, or ask for write access") from None  # fmt: skip
        raise StorageError(f"{path} is not a study database ({exc}); name the .db file a search wrote") from None
    if not tables:
        raise NoSuchStorage(f"{path} holds no studies yet; a search creates them (shufflesearch search STUDY_FILE)")
    _refuse_foreign(path, tables)
    if uri is None:
        return {"connect_args": {"timeout": 120}}
    # SQLAlchemy would percent-decode a URI inside its own URL: hand it the connection instead.
    return {"creator": lambda: sqlite3.connect(uri, uri=True, timeout=120, check_same_thread=False)}


def _read_only_uri(path: Path) -> str | None:
    """A read-only SQLite URI for `path`, or None where the folder is writable (a plain connection).

    A WAL database needs its -shm index: `mode=ro` uses an existing one (another user's live
    search included). On a read-only filesystem with no pending -wal nothing can change, and
    `immutable=1` reads without any index; with a pending -wal, immutable would miss
    committed trials, so it is mode=ro there too.
    """
    from urllib.parse import quote

    if os.access(path.parent, os.W_OK):
        return None
    wal = path.with_name(path.name + "-wal")
    frozen = os.statvfs(path.parent).f_flag & os.ST_RDONLY and not (wal.exists() and wal.stat().st_size)
    return f"file:{quote(str(path.resolve()))}?{'immutable=1' if frozen else 'mode=ro'}"


def fail_dead_trials(study, storage) -> None:
    """Mark FAIL (and queue again) the running trials whose worker is gone.

    Optuna's heartbeat check misses one case: a worker killed after it took a trial but
    before its first heartbeat leaves a RUNNING trial with no heartbeat row at all, which
    would keep every other worker waiting for it forever. Such a trial, older than twice
    the grace period, is dead too.
    """
    import datetime

    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState
    from sqlalchemy import text

    fail_stale_trials(study)
    cutoff = datetime.datetime.now() - datetime.timedelta(seconds=2 * storage.grace_period)
    with storage.engine.connect() as connection:  # the tables are Optuna's RDB schema (pinned optuna<6)
        orphans = connection.execute(
            text(
                "SELECT t.trial_id FROM trials t LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
                "WHERE t.study_id = :study AND t.state = 'RUNNING' AND h.trial_id IS NULL AND t.datetime_start < :cutoff"
            ),
            {"study": study._study_id, "cutoff": cutoff},
        ).scalars().all()  # fmt: skip
    retry = storage.get_heartbeat_stale_trial_callback()
    for trial_id in orphans:
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                retry(study, storage.get_trial(trial_id))
        except UpdateFinishedTrialError:
            pass  # another worker got there first


def _refuse_foreign(path: Path, tables: set[str]) -> None:
    """Another program's database (tables, none of them a study's): Optuna would add its own to it."""
    if tables and not tables >= OPTUNA_TABLES:
        raise StorageError(f"{path} is another program's SQLite file; name a new or existing study .db file")


def _tables(target: str) -> set[str]:
    """The tables of an SQLite file (a path, or a file: URI), read without writing."""
    with contextlib.closing(sqlite3.connect(target, uri=target.startswith("file:"), timeout=120)) as connection:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _use_wal(path: Path) -> None:
    """Write-ahead logging: readers (a progress view, `studies list`) never block the writing worker."""
    with contextlib.closing(sqlite3.connect(path, timeout=120)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


class ClaimLock:
    """Mutual exclusion for claiming trials of one study, across processes and machines.

    Not a context manager on purpose: the worker releases it from inside the objective,
    right after Optuna has popped the queued trial. `release` is idempotent.
    """

    def __init__(self, storage, url: str, study_name: str) -> None:
        self._path = sqlite_path(url)
        self._storage = storage
        self._key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
        self._held = False
        self._handle = None
        self._connection = None

    def acquire(self) -> None:
        if self._path is not None:
            if self._handle is None:
                self._handle = open(self._path.with_name(self._path.name + ".lock"), "a")  # noqa: SIM115
            fcntl.flock(self._handle, fcntl.LOCK_EX)
        else:
            from sqlalchemy import text

            if self._connection is None:
                self._connection = self._storage.engine.connect()
            self._connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": self._key})
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        if self._path is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
        else:
            from sqlalchemy import text

            self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})

    def close(self) -> None:
        self.release()
        for resource in (self._handle, self._connection):
            if resource is not None:
                resource.close()
        self._handle = self._connection = None

"""Where studies live: an embedded SQLite file by default, PostgreSQL for many machines.

Both are Optuna RDB storages, so both get heartbeats: a worker that dies mid-trial
(SIGKILL, power loss) stops beating, the next worker to look marks its trial FAIL, and
the retry callback queues the same parameters again, however often that happens: a
killed worker is not the trial's fault (see `queue`). Every check of a storage URL lives
here: `check_storage_url` (offline, cheap) and `open_storage` (connects).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sqlite3
import stat
import time
from pathlib import Path

from ..errors import MachineError, UsageError
from .redaction import redact

HEARTBEAT_INTERVAL_S = 5  # override: SHUFFLESEARCH_HEARTBEAT_S (a dead worker is noticed after 4 beats)
MAX_HEARTBEAT_S = 3600  # beyond an hour, a dead worker's trial would wait most of a day to be retried
OPTUNA_TABLES = {"studies", "trials", "version_info"}  # a study database has these (and more)


class StorageError(UsageError):
    """A storage URL we cannot use; the message says which forms work."""


class NoSuchStorage(StorageError):
    """A reader named an SQLite file that does not exist (or is empty): only a search creates one."""


class StorageUnavailable(MachineError):
    """A well-formed storage we cannot open (server down, wrong password, unwritable folder)."""


class StorageUnreadable(StorageUnavailable):
    """A storage that opened but failed while being read: a damaged SQLite page, a server gone mid-query."""


@contextlib.contextmanager
def reading(url: str):
    """Turn a storage failing mid-read (SQLite "database disk image is malformed", a lost server) into one line.

    Optuna wraps the driver's error in StorageInternalError ("exceeding max length"): the driver's own words are
    what the user needs.
    """
    import sqlalchemy.exc
    from optuna.exceptions import StorageInternalError

    try:
        yield
    except (StorageInternalError, sqlalchemy.exc.SQLAlchemyError, sqlite3.Error) as exc:
        root = _chain(exc)[-1]
        first = (str(root).strip().splitlines() or [type(root).__name__])[0]
        path = sqlite_path(url)
        fix = (f"; the file may be damaged: check it with sqlite3 {path} 'PRAGMA integrity_check', or restore a copy"
               if path is not None else "; check the server and try again")  # fmt: skip
        raise StorageUnreadable(f"cannot read storage {redact(url)}: {redact(first, url)}{fix}") from None


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


def check_storage_url(url: str) -> str:
    """`url`, once it is plausible: an SQLite URL must name a database file (not a folder, not another file).

    Cheap and offline (it opens nothing): sqlite3 would fail later with "unable to open
    database file" or "file is not a database" and no path. Other schemes pass through;
    `open_storage` names the forms it accepts.

    >>> check_storage_url("sqlite:///")
    Traceback (most recent call last):
    ...
    shufflesearch.search.storage.StorageError: storage 'sqlite:///' names a folder, not a database file; e.g. sqlite:///studies/x.db
    """
    if not url.strip():
        raise StorageError("--storage is empty; e.g. sqlite:///studies/x.db or postgresql://user@host/db")
    path = sqlite_path(url)
    if path is None:
        return url
    if not path.name or path.is_dir():
        raise StorageError(f"storage {url!r} names a folder, not a database file; e.g. sqlite:///studies/x.db")
    _check_sqlite_file(path)
    if path.is_file() and _file_id(path) not in _SQLITE_FILES:
        with open(path, "rb") as f:
            header = f.read(16)
        if header and header != b"SQLite format 3\0":
            raise StorageError(f"storage {url!r}: {path} is not an SQLite database")
        if header:
            _SQLITE_FILES.add(_file_id(path))
    return url


# The database files this process has read the header of (device, inode), so it reads each only once:
# closing any descriptor of a file drops every POSIX lock this process holds on it, its SQLite connections'
# too (sqlite.org/howtocorrupt.html, 2.2). A header read while a connection of ours was open let another
# process reset the WAL under that connection, which then read short ("disk I/O error") or "malformed".
_SQLITE_FILES: set[tuple[int, int]] = set()


def _file_id(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a pipe (FIFO)",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}  # fmt: skip


def _check_sqlite_file(path: Path) -> None:
    """Refuse what SQLite must never open: anything but a regular file or a name not yet taken.

    SQLite writes its header onto a device (`/dev/sda`) and creates `-journal` files beside
    `/dev/null`; a link to nothing would create its target wherever it points. The file's
    `-journal`, `-wal` and `-shm` companions are held to the same rule.
    """
    if path.name == ":memory:":
        raise StorageError("storage sqlite:///:memory: keeps nothing once the search ends (and each worker would "
                           "have its own); name a .db file, e.g. sqlite:///studies/x.db")  # fmt: skip
    for file in (path, *(path.with_name(path.name + end) for end in ("-journal", "-wal", "-shm"))):
        try:
            mode = file.stat().st_mode
        except FileNotFoundError:
            if file.is_symlink():
                raise StorageError(f"storage {file} is a link to nothing ({os.readlink(file)}); SQLite would create "
                                   "its target: name the .db file itself") from None  # fmt: skip
            continue
        except OSError as exc:  # /dev/null/x.db (not a folder), no permission, a loop of links, a long name
            raise StorageError(
                f"storage {path}: {exc.strerror or exc}; name a .db file in a folder you can read"
            ) from None
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            link = f" (a link to {file.resolve()})" if file.is_symlink() else ""
            raise StorageError(f"storage {file}{link} is {kind}, not a database file; SQLite would write onto it: "
                               "name a new or existing .db file, e.g. sqlite:///studies/x.db")  # fmt: skip


def heartbeat_interval() -> int:
    """Seconds between a worker's heartbeats: SHUFFLESEARCH_HEARTBEAT_S, else 5 (a dead worker is noticed after 4).

    Checked before a storage opens: Optuna would raise on 0 or a negative value, and an absurd
    one would leave a dead worker's trial unclaimed for days.
    """
    text = os.environ.get("SHUFFLESEARCH_HEARTBEAT_S") or str(HEARTBEAT_INTERVAL_S)  # set but empty: the default
    value = int(text.strip()) if re.fullmatch(r"\s*[0-9]{1,5}\s*", text) else None
    if value is None or not 1 <= value <= MAX_HEARTBEAT_S:
        raise StorageError(f"SHUFFLESEARCH_HEARTBEAT_S={text[:40]!r} must be a whole number of seconds in "
                           f"[1, {MAX_HEARTBEAT_S}] (default {HEARTBEAT_INTERVAL_S}); unset it for the default")  # fmt: skip
    return value


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

    interval = heartbeat_interval()
    if not url.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
        raise StorageError(f"storage {redact(url)!r}: use sqlite:///path/to/study.db or postgresql://user@host/db")
    if sqlite_path(url) is None and "@" in (_host(url) or ""):  # a raw '@' in the password: the driver echoes the rest
        raise StorageError(f"storage {redact(url)}: more than one '@' before the host; write an '@' in the "
                           "password as %40")  # fmt: skip
    engine_kwargs: dict = {"pool_pre_ping": True}
    path = sqlite_path(url)
    if path is not None:
        check_storage_url(url)  # a device, pipe or folder is refused before SQLite opens it (callers may skip the CLI)
    if path is not None and set("%?#") & set(str(path)):  # URL syntax: SQLAlchemy and SQLite would open another file
        raise StorageError(f"SQLite path {path} holds '%', '?' or '#', which a database URL misreads; "
                           "rename that file or folder")  # fmt: skip
    if path is not None:
        # Wait for the writer instead of failing with "database is locked" (several local workers).
        engine_kwargs = {"connect_args": {"timeout": 120}}
        if not create:
            engine_kwargs = _reader_engine_kwargs(path)
    # Optuna's own log only at -v: our progress view reports trial states, and Optuna would log an
    # interrupted trial with a traceback.
    from ..logs import optuna_level

    optuna.logging.set_verbosity(optuna_level())
    if path is not None and create:
        from ..atomic import check_writable

        if not path.parent.is_dir():  # no folder chains made anywhere a typo points
            raise StorageError(f"folder {path.parent} does not exist; create it first (mkdir -p {path.parent}) or "
                               "name a .db file in an existing folder")  # fmt: skip
        check_writable(path.parent)  # read-only or full: one line naming the folder, not sqlite's traceback
        if not path.exists():
            _create_whole(path)
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
            raise StorageUnavailable(f"cannot open storage {redact(url)}: {redact(first, url)}{fix}") from None
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
    if not tables or (not tables >= OPTUNA_TABLES and all(map(_optuna_table, tables))):  # none yet, or being made
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


def _refuse_foreign(path: Path, tables: set[str]) -> None:
    """Another program's database (tables, none of them a study's): Optuna would add its own to it.

    A study database another worker is creating right now holds only some of Optuna's tables
    (SQLite creates them one by one): that is a study, not another program's file."""
    if tables and not tables >= OPTUNA_TABLES and not all(map(_optuna_table, tables)):
        raise StorageError(f"{path} is another program's SQLite file; name a new or existing study .db file")


def _optuna_table(name: str) -> bool:
    """A table of Optuna's schema (every version keeps these names), or of its migrations."""
    return name in ("studies", "trials", "version_info", "alembic_version") or name.startswith(("study_", "trial_"))


def _tables(target: str) -> set[str]:
    """The tables of an SQLite file (a path, or a file: URI), read without writing."""
    with contextlib.closing(sqlite3.connect(target, uri=target.startswith("file:"), timeout=120)) as connection:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _create_whole(path: Path) -> None:
    """Make the study database at `path` whole, or keep the one another worker made first.

    Optuna creates its tables one by one, then stamps its schema version: workers and readers
    opening a database being created in place met some of the tables, or none of the version
    rows, and raced to add them. Built beside it and hard-linked into place (a link never
    replaces a file), the database appears whole or not at all. A worker killed while
    building leaves only its hidden `.NAME.PID.new` file; on a filesystem without hard links
    the database is created in place, as before.
    """
    from optuna.storages import RDBStorage

    building = path.with_name(f".{path.name}.{os.getpid()}.new")
    parts = [building, *(building.with_name(building.name + end) for end in ("-wal", "-shm"))]
    try:
        _use_wal(building)
        RDBStorage(f"sqlite:///{building}").engine.dispose()
        with contextlib.closing(sqlite3.connect(building)) as connection:  # everything into the one file we link
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with contextlib.suppress(FileExistsError):  # another worker's came first: as whole as ours
            os.link(building, path)
        _SQLITE_FILES.add(_file_id(path))  # ours or theirs, an SQLite file: never reopened outside SQLite
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise StorageUnavailable(f"cannot create {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # sqlite3's or SQLAlchemy's: the folder filled, say
        raise StorageUnavailable(f"cannot create {path}: {str(exc).splitlines()[0]}") from None
    finally:
        for part in parts:
            part.unlink(missing_ok=True)


def _use_wal(path: Path) -> None:
    """Write-ahead logging: readers (a progress view, `studies list`) never block the writing worker."""
    with contextlib.closing(sqlite3.connect(path, timeout=120)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


__all__ = [
    "NoSuchStorage",
    "StorageError",
    "StorageUnavailable",
    "StorageUnreadable",
    "check_storage_url",
    "heartbeat_interval",
    "open_storage",
    "reading",
    "redact",
    "sqlite_path",
]

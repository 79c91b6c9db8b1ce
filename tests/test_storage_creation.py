"""A fresh SQLite study database appears whole: workers that start together never meet half a schema.

Optuna creates its tables one by one and then stamps its schema version. Created in place,
a reader (a test's poll, `studies list`) or a second worker met some of the tables, or none
of the version rows, and raced to add them.
"""

import contextlib
import errno
import multiprocessing
import os
import sqlite3
import time

import optuna

from shufflesearch.search import storage as storage_module
from shufflesearch.search.storage import OPTUNA_TABLES, open_storage


def _open_when_told(url, start):
    start.wait()
    open_storage(url).engine.dispose()


def _snapshot(path):
    """The tables and version rows a reader sees now, or None before the file exists."""
    if not path.exists():
        return None
    with contextlib.closing(sqlite3.connect(path, timeout=60)) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        versions = (
            connection.execute("SELECT count(*) FROM version_info").fetchone()[0] if "version_info" in tables else 0
        )
    return tables, versions


def test_workers_creating_one_database_together_show_readers_only_a_whole_one(tmp_path):
    context = multiprocessing.get_context("spawn")
    for attempt in range(2):  # each round a fresh database, four workers released at once
        path = tmp_path / f"race{attempt}.db"
        start = context.Event()
        workers = [context.Process(target=_open_when_told, args=(f"sqlite:///{path}", start)) for _ in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(1.0)  # every worker imported and waiting
        start.set()
        seen = []
        while any(worker.is_alive() for worker in workers):
            if (now := _snapshot(path)) is not None:
                seen.append(now)
        for worker in workers:
            worker.join()
        assert [worker.exitcode for worker in workers] == [0] * 4
        seen.append(_snapshot(path))
        partial = [
            (sorted(tables), versions) for tables, versions in seen if not tables >= OPTUNA_TABLES or versions != 1
        ]
        assert not partial, partial[:3]
        with contextlib.closing(sqlite3.connect(path)) as connection:
            assert connection.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(f"race{attempt}")) == [
            f"race{attempt}.db"
        ]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no building copy left behind


def test_a_worker_that_loses_the_race_opens_the_winners_database(tmp_path, monkeypatch):
    path, link = tmp_path / "shared.db", os.link
    winner = open_storage(f"sqlite:///{tmp_path / 'winner.db'}")
    optuna.create_study(study_name="theirs", storage=winner)
    winner.engine.dispose()

    def another_worker_first(source, target):  # theirs lands between our check and our link
        os.rename(tmp_path / "winner.db", target)
        link(source, target)  # raises FileExistsError, as the real race does

    monkeypatch.setattr(storage_module.os, "link", another_worker_first)
    opened = open_storage(f"sqlite:///{path}")
    assert optuna.get_all_study_names(storage=opened) == ["theirs"]
    opened.engine.dispose()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.db"]


def test_without_hard_links_the_database_is_created_in_place(tmp_path, monkeypatch):
    def refused(source, target):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(storage_module.os, "link", refused)
    opened = open_storage(f"sqlite:///{tmp_path / 'plain.db'}")
    optuna.create_study(study_name="here", storage=opened)
    opened.engine.dispose()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.db"]
    assert _snapshot(tmp_path / "plain.db")[1] == 1


def test_checking_a_storage_again_keeps_this_process_s_sqlite_locks(tmp_path):
    # Closing any descriptor of a file drops every POSIX lock the process holds on it. A second look at
    # the header, while a connection of ours was open, dropped that connection's shared lock: the next
    # process to close its own connection took itself for the last, checkpointed and deleted the WAL
    # under ours (which then read short: "disk I/O error" in the fault storms).
    import subprocess
    import sys

    from shufflesearch.search.storage import check_storage_url

    db = tmp_path / "locked.db"
    url = f"sqlite:///{db}"
    open_storage(url).engine.dispose()
    ours = sqlite3.connect(db, isolation_level=None)
    ours.execute("CREATE TABLE held (x)")  # in the WAL, which our open connection keeps
    assert (tmp_path / "locked.db-wal").exists()
    check_storage_url(url)
    other = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT 1 FROM held').fetchall(); c.close()"
    )
    subprocess.run([sys.executable, "-c", other, str(db)], check=True)
    assert (tmp_path / "locked.db-wal").exists(), "another process took our connection's locks for none"
    assert ours.execute("SELECT count(*) FROM held").fetchone() == (0,)
    ours.close()

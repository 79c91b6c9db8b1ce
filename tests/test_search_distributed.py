"""Real workers against real storages: 3 concurrent processes on SQLite and PostgreSQL, SIGKILL and SIGINT.

Each worker is a separate `shufflesearch search` process, as on separate machines. Trials
train for real on Fashion-MNIST, at a tiny fidelity so the suite stays fast.
"""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from servers import require, wait_for

from shufflesearch.accuracy.datasets.fashion_mnist import FASHION_MNIST_DIR
from shufflesearch.search.storage import NoSuchStorage, open_storage

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).with_name("shufflesearch"))
STUDY = """
[study]
name = "{name}"
trials = {trials}
pruner = "none"
{extra}
[budget]
mflops = [13]
[space]
groups = [1, 3, 8]
scale = [0.1, 1.0]
repeats = [[1, 2], [1, 3], [1, 2]]
[accuracy.fidelity]
train_images = {images}
epochs = 2
curve_eval_images = 0
eval_images = 500
"""
ENV = {**os.environ, "SHUFFLESEARCH_HEARTBEAT_S": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(autouse=True)
def fresh_result_cache(tmp_path):
    # A cached proxy result would finish a trial instantly: these tests need trials that really train.
    ENV["XDG_CACHE_HOME"] = str(tmp_path / "cache")


def study_file(tmp_path, name, trials, images=256, extra=""):
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(STUDY.format(name=name, trials=trials, images=images, extra=extra)))
    return path


def start_worker(path, storage, *extra, env=None):
    # A session of its own: killing the group kills the CLI and its worker, like a machine dying.
    return subprocess.Popen([CLI, "search", str(path), "--storage", storage, "--json", *extra], env=env or ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip


def trials_of(storage, name):
    # A reader, as `studies list` is: the test must not race the workers creating the schema.
    # Disposed at once: SQLite connections left open in this process kept later ones on an old snapshot
    # of a WAL database that other processes were writing (a poll then never saw a trial run).
    opened = open_storage(storage, create=False)
    try:
        return optuna.load_study(study_name=f"{name}-13M", storage=opened).get_trials()
    finally:
        opened.engine.dispose()


# What `trials_of` raises while the workers have not created the database (NoSuchStorage) or the study yet.
NOT_YET = (NoSuchStorage, KeyError)


def polled_trials(storage, name):
    """The study's trials, or none while the workers have not created its database or the study yet."""
    try:
        return trials_of(storage, name)
    except NOT_YET:
        return []


def by_state(trials, *states):
    return [t for t in trials if t.state.name in states]


def assert_exactly(trials, n):
    finished = by_state(trials, "COMPLETE", "PRUNED")
    assert len(finished) == n, [(t.number, t.state.name) for t in trials]
    assert not by_state(trials, "RUNNING", "WAITING")
    # Every finished trial answers one queue ticket: a fresh one, or the retry of a failed attempt.
    failed = {t.number for t in by_state(trials, "FAIL")}
    retried = [t.system_attrs["failed_trial"] for t in finished if "failed_trial" in t.system_attrs]
    assert len(retried) == len(set(retried)) and set(retried) <= failed
    for t in by_state(trials, "COMPLETE"):
        assert 0 < t.user_attrs["top1"] <= 1 and t.user_attrs["mflops"] <= 13


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    if request.param == "sqlite":
        require(FASHION_MNIST_DIR.exists(), "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return request.getfixturevalue("postgres_url")


def test_three_processes_on_one_study_train_distinct_specs(tmp_path, storage):
    # The README's "the same command on every machine", started together: each process takes its
    # own seed stream from the study, and a spec the study holds is refused and sampled again.
    name = f"three{storage[:6]}"
    path = study_file(tmp_path, name, trials=9)
    workers = [start_worker(path, storage) for _ in range(3)]
    outputs = [w.communicate(timeout=900) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], [err for _, err in outputs]
    trials = trials_of(storage, name)
    assert_exactly(trials, 9)
    finished = by_state(trials, "COMPLETE", "PRUNED")
    assert len({json.dumps(t.params, sort_keys=True) for t in finished}) == 9  # distinct parameter sets
    assert len({json.dumps(t.user_attrs["spec"], sort_keys=True) for t in finished}) == 9  # and distinct specs
    for t in by_state(trials, "FAIL"):  # no failure but a refused duplicate (racing or not)
        assert t.system_attrs["shufflesearch:failure"]["kind"] == "duplicate", t.system_attrs
    assert len({t.user_attrs["worker"] for t in trials}) >= 2  # the work really was shared
    study = optuna.load_study(study_name=f"{name}-13M", storage=open_storage(storage))
    assert study._storage.get_study_system_attrs(study._study_id)["shufflesearch:workers"] == 3


def test_sigkilled_worker_leaves_no_corruption_and_its_trial_is_retried(tmp_path, postgres_url):
    path = study_file(tmp_path, "killed", trials=5, images=1024)
    victim = start_worker(path, postgres_url)

    def training_trial():  # running, and past sampling: its spec is recorded, so it is training
        return [t for t in by_state(polled_trials(postgres_url, "killed"), "RUNNING") if "spec" in t.user_attrs]

    (trial,) = wait_for(training_trial, 120, what="the first trial to train", process=victim)[:1]
    os.killpg(victim.pid, signal.SIGKILL)  # mid-trial: no chance to mark anything
    victim.wait()
    survivors = [start_worker(path, postgres_url) for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in survivors]
    assert [w.returncode for w in survivors] == [0, 0], [err for _, err in outputs]
    trials = trials_of(postgres_url, "killed")
    assert_exactly(trials, 5)
    killed = next(t for t in trials if t.number == trial.number)
    assert killed.state.name == "FAIL"  # found stale by a survivor's heartbeat check
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == trial.number)
    assert retry.state.name in ("COMPLETE", "PRUNED") and retry.params == killed.params


def test_readers_of_an_empty_postgresql_database_create_no_tables(postgres_url):
    import psycopg

    server, empty = postgres_url.rsplit("/", 1)[0], "empty_for_readers"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {empty}")
        db.execute(f"CREATE DATABASE {empty}")
    done = subprocess.run([sys.executable, "-m", "shufflesearch", "studies", "list", "--storage", f"{server}/{empty}"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "no studies in" in done.stderr and done.stderr.count("\n") == 1, done.stderr
    with psycopg.connect(f"{server}/{empty}") as db:
        assert db.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone() == (0,)
    done = subprocess.run([sys.executable, "-m", "shufflesearch", "studies", "list", "--storage", f"{server}/no_such_db"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1 and "no_such_db" in done.stderr and "does not exist" in done.stderr, done.stderr


def test_ctrl_c_then_resume_on_the_embedded_storage(tmp_path):
    require(FASHION_MNIST_DIR.exists(), "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    path = study_file(tmp_path, "resumed", trials=4, images=1024)
    storage = f"sqlite:///{tmp_path / 'resumed.db'}"
    run = start_worker(path, storage)
    wait_for(lambda: by_state(polled_trials(storage, "resumed"), "RUNNING"), 120, what="a running trial", process=run)
    os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, (out[-2000:], err[-2000:])
    assert "--resume" in err and "Traceback" not in err
    interrupted = by_state(trials_of(storage, "resumed"), "FAIL")
    assert len(interrupted) == 1
    again = start_worker(path, storage, "--resume")
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    trials = trials_of(storage, "resumed")
    assert_exactly(trials, 4)
    assert any(t.system_attrs.get("failed_trial") == interrupted[0].number for t in trials)


def test_a_seeded_study_is_reproducible(tmp_path):
    require(FASHION_MNIST_DIR.exists(), "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    path = study_file(tmp_path, "again", trials=3)
    runs = []
    for attempt in ("a", "b"):
        ENV["XDG_CACHE_HOME"] = str(tmp_path / f"cache-{attempt}")  # retrain: a cache hit would prove nothing
        storage = f"sqlite:///{tmp_path / f'{attempt}.db'}"
        run = start_worker(path, storage)
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
        trials = sorted(trials_of(storage, "again"), key=lambda t: t.number)
        runs.append([(t.params, t.user_attrs["top1"]) for t in trials])
    assert runs[0] == runs[1] and len(runs[0]) == 3


def _children(pid):
    """The worker processes (multiprocessing's spawn) whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _training(storage, name):  # running, and past sampling: its spec is recorded, so it is training
    return [t for t in by_state(polled_trials(storage, name), "RUNNING") if "label" in t.user_attrs]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killing_the_workers_parent_stops_its_workers(tmp_path, sig):
    require(FASHION_MNIST_DIR.exists(), "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    name = f"orphans{sig.name.lower()}"
    path, storage = study_file(tmp_path, name, trials=3, images=2048), f"sqlite:///{tmp_path / 'o.db'}"
    parent = start_worker(path, storage, "--workers", "2")
    wait_for(lambda: _training(storage, name), 300, 0.5, what="a worker to train", process=parent)
    workers = wait_for(lambda: _children(parent.pid) if len(_children(parent.pid)) == 2 else None, 60,
                       what="two worker processes")  # fmt: skip
    os.kill(parent.pid, sig)  # the parent only: its workers are not told by anyone
    parent.communicate(timeout=60)
    wait_for(lambda: not any(map(_alive, workers)), 60, 0.5, what="the orphaned workers to stop")
    trials = trials_of(storage, name)
    assert not by_state(trials, "RUNNING"), [(t.number, t.state.name) for t in trials]  # each marked its trial
    for t in by_state(trials, "FAIL"):
        assert t.system_attrs["shufflesearch:failure"]["kind"] == "interrupted"
    again = start_worker(path, storage, "--resume")
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert_exactly(trials_of(storage, name), 3)


def test_a_search_whose_surviving_worker_finished_every_trial_exits_0(tmp_path):
    require(FASHION_MNIST_DIR.exists(), "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    path, storage = study_file(tmp_path, "survivor", trials=4, images=1024), f"sqlite:///{tmp_path / 's.db'}"
    run = start_worker(path, storage, "--workers", "2", env={k: v for k, v in ENV.items() if k != "PYTHONWARNINGS"})
    (trial, *_) = wait_for(lambda: _training(storage, "survivor"), 300, 0.5, what="a worker to train", process=run)
    victim = int(trial.user_attrs["worker"].rsplit(":", 1)[1])
    assert victim in _children(run.pid)
    os.kill(victim, signal.SIGKILL)  # one worker dies (the OOM killer, say); the other goes on
    out, err = run.communicate(timeout=900)
    assert run.returncode == 0, err[-2000:]
    (line,) = [line for line in err.splitlines() if line.strip()]
    assert re.fullmatch(r"warning: worker shufflesearch-worker-[01] was killed by SIGKILL; the other workers "
                        r"finished every trial", line), err  # fmt: skip
    trials = trials_of(storage, "survivor")
    assert_exactly(trials, 4)
    assert any(t.system_attrs.get("failed_trial") == trial.number for t in trials)
    assert json.loads(out)["studies"][0]["complete"] + json.loads(out)["studies"][0]["pruned"] == 4


def test_worker_processes_warn_in_one_line(tmp_path):
    require(FASHION_MNIST_DIR.exists(), "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    # A store that cannot keep weights warns once per trial, from inside the worker processes.
    path = study_file(tmp_path, "warns", trials=2, images=64, extra='artifacts = "/dev/null/weights"')
    env = {k: v for k, v in ENV.items() if k != "PYTHONWARNINGS"}  # every warning Python would print
    done = subprocess.run([CLI, "search", str(path), "--storage", f"sqlite:///{tmp_path / 'w.db'}", "--workers", "2",
                           "--json"], env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("warning: ") for line in lines), done.stderr
    assert any("recorded without weights" in line for line in lines), done.stderr

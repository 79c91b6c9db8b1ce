"""Real workers against real storages: PostgreSQL with 3 concurrent workers, SIGKILL and SIGINT.

Each worker is a separate `shufflesearch search` process, as on separate machines. Trials
train for real on Fashion-MNIST, at a tiny fidelity so the suite stays fast.
"""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from servers import require, wait_for

from shufflesearch.accuracy.datasets.fashion_mnist import FASHION_MNIST_DIR
from shufflesearch.search.storage import open_storage

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).with_name("shufflesearch"))
STUDY = """
[study]
name = "{name}"
trials = {trials}
pruner = "none"
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


def study_file(tmp_path, name, trials, images=256):
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(STUDY.format(name=name, trials=trials, images=images)))
    return path


def start_worker(path, storage, *extra):
    # A session of its own: killing the group kills the CLI and its worker, like a machine dying.
    return subprocess.Popen([CLI, "search", str(path), "--storage", storage, "--json", *extra], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip


def trials_of(storage, name):
    study = optuna.load_study(study_name=f"{name}-13M", storage=open_storage(storage))
    return study.get_trials(deepcopy=False)


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


def test_three_workers_finish_exactly_the_requested_trials(tmp_path, postgres_url):
    path = study_file(tmp_path, "three", trials=7)
    workers = [start_worker(path, postgres_url) for _ in range(3)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], [err for _, err in outputs]
    trials = trials_of(postgres_url, "three")
    assert_exactly(trials, 7)
    assert not by_state(trials, "FAIL")
    assert len({t.user_attrs["worker"] for t in trials}) >= 2  # the work really was shared


def test_sigkilled_worker_leaves_no_corruption_and_its_trial_is_retried(tmp_path, postgres_url):
    path = study_file(tmp_path, "killed", trials=5, images=1024)
    victim = start_worker(path, postgres_url)

    def training_trial():
        try:  # running, and past sampling: its spec is recorded, so it is training
            return [t for t in by_state(trials_of(postgres_url, "killed"), "RUNNING") if "spec" in t.user_attrs]
        except KeyError:  # study not created yet
            return None

    (trial,) = wait_for(training_trial, 120, what="the first trial to train")[:1]
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
    wait_for(lambda: (tmp_path / "resumed.db").exists() and _running(storage), 120, what="a running trial")
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


def _running(storage):
    try:
        return by_state(trials_of(storage, "resumed"), "RUNNING")
    except KeyError:
        return []


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

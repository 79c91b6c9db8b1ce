"""The fault suite: search workers SIGKILLed and SIGINTed at random points, on both storages.

Each round starts real `shufflesearch search` processes (real training on Fashion-MNIST at a
tiny fidelity), picks one and kills it at a random point: a random time into its start-up,
a random time after it began training a trial, or a random time after it started (which
lands anywhere: study creation, queueing, training, result writing). After every kill the storage
must still be readable and every trial seen COMPLETE must still be COMPLETE with the same
values; after the last, a `--resume` run must finish the study with exactly N trials, one
per queue ticket. SHUFFLESEARCH_FAULT_KILLS sets the kills per storage (default 12, so 24
a run); SHUFFLESEARCH_FAULT_LOG names a JSON file to receive the per-kill log.
"""

import json
import os
import random
import signal
import socket
import time
from pathlib import Path

import optuna
import pytest
from servers import require, wait_for
from test_search_distributed import ENV, NOT_YET, by_state, start_worker, study_file, trials_of

from shufflesearch.accuracy.datasets.fashion_mnist import FASHION_MNIST_DIR
from shufflesearch.search.queue import fail_dead_trials
from shufflesearch.search.storage import open_storage

KILLS = int(os.environ.get("SHUFFLESEARCH_FAULT_KILLS", "12"))


@pytest.fixture(autouse=True)
def fresh_result_cache(tmp_path):
    ENV["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # cached results would finish trials instantly


def test_kill_storm_on_the_embedded_storage(tmp_path):
    require(FASHION_MNIST_DIR.exists(), "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    storage = f"sqlite:///{tmp_path / 'storm.db'}"
    kill_storm(tmp_path, storage, "storm", workers=1, seed=1, trials=10)


@pytest.mark.slow
def test_kill_storm_on_postgresql_with_two_workers(tmp_path, postgres_url):
    kill_storm(tmp_path, postgres_url, "pgstorm", workers=2, seed=2, trials=24)


def kill_storm(tmp_path, storage, name, workers, seed, trials):
    rng = random.Random(seed)
    log, studies = [], {}
    while len(log) < KILLS:  # a study the workers finish between kills is checked, then the next begins
        study = f"{name}{len(studies) + 1}"
        studies[study] = storm_one_study(tmp_path, storage, study, workers, rng, log, trials)
    _write_log(name, log, studies)


def storm_one_study(tmp_path, storage, name, workers, rng, log, trials):
    # Each study proposes the same specs (same seed): a cache of its own keeps them training, and
    # 1,024 images make trials of a second or two, so kills land in training, not only between trials.
    ENV["XDG_CACHE_HOME"] = str(tmp_path / "cache" / name)
    path = study_file(tmp_path, name, trials=trials, images=1024)
    running, completed = [], {}
    while len(log) < KILLS:
        running += [start_worker(path, storage) for _ in range(workers - len(running))]
        victim = rng.choice(running)
        aim = _wait_for_a_kill_point(rng, storage, name, victim, len(completed))
        if any(w.poll() is not None for w in running):  # workers only exit by themselves when the study is done
            for w in running:
                _, err = w.communicate(timeout=900)
                assert w.returncode == 0, err[-2000:]
            return _check_finished(storage, name, trials, completed, resumed_in=None)
        last = len(log) == KILLS - 1
        for w in running if last else [victim]:  # the last round kills every worker: resume has work to do
            sig = rng.choice([signal.SIGKILL, signal.SIGINT])
            phase = _phase(storage, name, w.pid)
            os.killpg(w.pid, sig)
            _, err = w.communicate(timeout=120)
            if sig == signal.SIGINT:  # Ctrl-C: a clean exit with a way to go on, or the last trial just ended
                assert w.returncode in (130, -signal.SIGINT) or (w.returncode == 0 and _done(storage, name, trials)), (
                    err
                )
                assert "Traceback" not in err, err[-2000:]
            completed = _check_nothing_lost(storage, name, completed)
            log.append({"study": name, "signal": sig.name, "aim": aim, "phase": phase, "completed": len(completed)})
        running = [w for w in running if w.poll() is None]
    started = time.monotonic()
    final = start_worker(path, storage, *(["--resume"] if _exists(storage, name) else []))  # all kills may predate it
    _, err = final.communicate(timeout=900)
    assert final.returncode == 0, err[-2000:]
    return _check_finished(storage, name, trials, completed, resumed_in=time.monotonic() - started)


def _wait_for_a_kill_point(rng, storage, name, victim, completed_before):
    """Sleep to a random point of one of the victim's phases; return which phase was aimed at."""
    aim = rng.choice(["start-up", "training", "after a result", "after a result", "anywhere"])
    gone = victim.poll
    if aim == "start-up":
        time.sleep(rng.uniform(0.1, 3.0))
    elif aim == "training":
        wait_for(lambda: gone() is not None or _phase(storage, name, victim.pid) == "training", 300, 0.5,
                 what="the victim to train")  # fmt: skip
        time.sleep(rng.uniform(0.0, 1.5))
    elif aim == "after a result":
        wait_for(lambda: gone() is not None or _completed(storage, name) > completed_before, 300, 0.5,
                 what="a trial to complete")  # fmt: skip
        time.sleep(rng.uniform(0.0, 2.0))
    else:
        time.sleep(rng.uniform(0.5, 20.0))
    return aim


def _exists(storage, name):
    try:
        trials_of(storage, name)
        return True
    except NOT_YET:
        return False


def _done(storage, name, trials):
    return len(by_state(trials_of(storage, name), "COMPLETE", "PRUNED")) == trials


def _completed(storage, name):
    try:
        return len(by_state(trials_of(storage, name), "COMPLETE"))
    except NOT_YET:
        return 0


def _check_finished(storage, name, trials_asked, completed, resumed_in):
    trials = trials_of(storage, name)
    _check_nothing_lost(storage, name, completed)
    _assert_one_result_per_ticket(trials, trials_asked)
    resume = None if resumed_in is None else round(resumed_in, 1)
    return {"failed_attempts": len(by_state(trials, "FAIL")), "resume_s": resume,
            "finished": len(by_state(trials, "COMPLETE", "PRUNED"))}  # fmt: skip


def _phase(storage, name, pid):
    """Where the kill lands: in a trial of this worker, or elsewhere (start-up, queueing, writing)."""
    try:
        running = by_state(trials_of(storage, name), "RUNNING")
    except NOT_YET:
        return "before the study existed"
    mine = [t for t in running if t.user_attrs.get("worker") == f"{socket.gethostname()}:{pid}"]
    return "training" if any("spec" in t.user_attrs for t in mine) else "between trials"


def _check_nothing_lost(storage, name, completed):
    try:
        trials = trials_of(storage, name)
    except NOT_YET:
        assert not completed
        return completed
    now = {t.number: t.values for t in by_state(trials, "COMPLETE")}
    lost = {n for n in completed if now.get(n) != completed[n]}
    assert not lost, f"completed trials lost or changed: {sorted(lost)}"
    return now


def _assert_one_result_per_ticket(trials, n):
    finished = by_state(trials, "COMPLETE", "PRUNED")
    assert not by_state(trials, "RUNNING", "WAITING")
    tickets = [t.system_attrs.get("failed_trial", t.number) for t in finished]
    assert len(tickets) == len(set(tickets)), "a ticket was finished twice"
    assert len(finished) == n, [(t.number, t.state.name) for t in trials]
    for t in by_state(trials, "FAIL"):  # every failure is an interruption that was queued again
        assert "error" not in t.user_attrs, t.user_attrs["error"]
        assert any(t.number in u.system_attrs.get("retry_history", []) for u in trials)


def _write_log(name, log, studies):
    if not os.environ.get("SHUFFLESEARCH_FAULT_LOG"):
        return
    path = os.environ["SHUFFLESEARCH_FAULT_LOG"]
    runs = json.loads(Path(path).read_text()) if os.path.exists(path) else {}
    runs[name] = {"kills": log, "studies": studies}
    with open(path, "w") as f:
        json.dump(runs, f, indent=1)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_orphaned_before_its_first_heartbeat_is_queued_again(tmp_path, monkeypatch):
    # The worker died between taking the trial and its heartbeat thread's first beat.
    monkeypatch.setenv("SHUFFLESEARCH_HEARTBEAT_S", "1")
    storage = open_storage(f"sqlite:///{tmp_path / 'orphan.db'}")
    study = optuna.create_study(storage=storage, study_name="orphan")
    study.enqueue_trial({"x": 1.0})
    orphan = study.ask()  # WAITING -> RUNNING, and no heartbeat is ever sent
    fail_dead_trials(study, storage)
    assert study.get_trials()[0].state.name == "RUNNING"  # young: its first beat may still come
    with storage.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE trials SET datetime_start = datetime(datetime_start, '-1 hour')")
    fail_dead_trials(study, storage)
    first, retry = study.get_trials()
    assert first.number == orphan.number and first.state.name == "FAIL"
    assert retry.state.name == "WAITING" and retry.system_attrs["failed_trial"] == orphan.number


class Broken(RuntimeError):
    """Raised by the stand-in evaluator below: what an evaluation bug looks like to the runner."""


def test_an_evaluation_that_raises_is_retried_at_most_three_times_then_left_failed(tmp_path):
    from shufflesearch.search.queue import run_worker
    from shufflesearch.search.study_file import load_study

    path = tmp_path / "e.toml"
    path.write_text("[study]\nname = 'e'\ntrials = 2\nenqueue_presets = false\n[budget]\nmflops = [40]\n")
    config = load_study(path)
    url = f"sqlite:///{tmp_path / 'e.db'}"
    calls = []

    def evaluate(spec, report):  # the first ticket's spec always raises; the other trains "fine"
        calls.append(spec)
        if spec == calls[0]:
            raise Broken(f"cannot evaluate {spec.label}")
        return {"top1": 0.5}

    for attempt in range(1, 5):  # each run ends on the error, as a real worker exits on one
        try:
            run_worker(config, url, 2, evaluate)
            break
        except Broken:
            assert attempt <= 3
    (name,) = config.budget_windows()
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()
    failed = by_state(trials, "FAIL")
    assert len(failed) == 3 and {t.params == failed[0].params for t in failed} == {True}
    assert failed[-1].user_attrs["errors"] == 3 and "cannot evaluate" in failed[-1].user_attrs["error"]
    assert len(by_state(trials, "COMPLETE")) == 1 and not by_state(trials, "WAITING", "RUNNING")


# -- the disk filling up under a running search --------------------------------------------------
FILLING = """
import errno, os, resource, signal, sys
from pathlib import Path
from shufflesearch.search import objective

calls = []


def fill(folder):
    if os.environ.get("FILL") == "rlimit":  # no mount: no file may grow from here on (EFBIG)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        biggest = max(p.stat().st_size for p in folder.iterdir())
        resource.setrlimit(resource.RLIMIT_FSIZE, (biggest, biggest))
        return
    with open(folder / "filler", "ab") as f:  # a real full disk (ENOSPC)
        try:
            while True:
                f.write(b"\\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def evaluator(config, threads=None, device=None):  # the stand-in: a fast "training" that fills the disk once
    def evaluate(spec, report):
        calls.append(spec)
        if len(calls) == 3 and os.environ.get("FILL"):
            fill(Path(os.environ["FOLDER"]))
        return {"top1": 0.5 + len(calls) / 100}

    return evaluate


objective.proxy_accuracy_evaluator = evaluator
from shufflesearch.cli import main

main(sys.argv[1:])
"""


def test_a_disk_that_fills_during_a_search_is_one_line_and_keeps_the_finished_trials(tmp_path):
    import subprocess
    import sys

    from test_output_faults import mount_tmpfs, mount_works, unmount

    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = mount_works(tmp_path) and mount_tmpfs(folder, "size=16m")
    try:
        script = tmp_path / "filling.py"
        script.write_text(FILLING)
        path = tmp_path / "full.toml"
        path.write_text("[study]\nname = 'full'\ntrials = 5\nenqueue_presets = false\npruner = 'none'\n"
                        "[budget]\nmflops = [13]\n")  # fmt: skip
        storage = f"sqlite:///{folder / 'full.db'}"
        env = {**ENV, "FOLDER": str(folder), "FILL": "tmpfs" if mounted else "rlimit"}
        done = subprocess.run([sys.executable, str(script), "search", str(path), "--storage", storage, "--json"],
                              env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 1, done.stderr[-3000:]
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and "Should not reach" not in done.stderr
        assert done.stderr.startswith(f"error: the study storage {storage} failed during the search: ")
        assert "--resume" in done.stderr and ("full" in done.stderr or "disk" in done.stderr), done.stderr
        (folder / "filler").unlink(missing_ok=True)
        trials = trials_of(storage, "full")
        kept = [(t.number, t.value) for t in by_state(trials, "COMPLETE")]
        assert kept == [(0, pytest.approx(0.51)), (1, pytest.approx(0.52))]  # every finished trial is kept
        env["FILL"] = ""
        again = subprocess.run([sys.executable, str(script), "search", str(path), "--storage", storage, "--resume"],
                               env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert again.returncode == 0, again.stderr[-3000:]
        finished = by_state(trials_of(storage, "full"), "COMPLETE")
        assert len(finished) == 5 and [(t.number, t.value) for t in finished[:2]] == kept
    finally:
        if mounted:
            unmount(folder)


def test_a_storage_failure_is_told_apart_from_other_errors():
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from shufflesearch.search.queue import storage_failure

    try:
        try:
            raise OperationalError("INSERT ...", {}, sqlite3.OperationalError("database or disk is full"))
        except OperationalError:
            raise AssertionError("Should not reach.")  # noqa: B904 - what Optuna raises when it cannot record a result
    except AssertionError as hidden:
        assert storage_failure(hidden) == "database or disk is full"
    assert storage_failure(OSError(28, "No space left on device")) == "No space left on device"
    assert storage_failure(ValueError("groups=5")) is None
    assert storage_failure(RuntimeError("x")) is None

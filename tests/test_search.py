import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.trial import FixedTrial

from shufflesearch.complexity import count_macs
from shufflesearch.presets import get_preset, paper_models
from shufflesearch.search.queue import prepare_study
from shufflesearch.search.space import NoFeasibleWidth, SearchSpace, suggest_spec
from shufflesearch.search.standing import pareto_front
from shufflesearch.search.study_file import StudyFileError, load_study

SMALL_SPACE = SearchSpace(groups=(1, 3, 8), scale=(0.1, 1.0), repeats=((1, 3), (1, 4), (1, 3)))


@settings(max_examples=300)
@given(
    groups=st.sampled_from(SMALL_SPACE.groups),
    repeats=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3)),
    width=st.floats(0, 1),
    budget=st.floats(2, 160),
    fraction=st.sampled_from([0.0, 0.5, 0.9]),
)
def test_sampled_specs_never_exceed_the_budget(groups, repeats, width, budget, fraction):
    params = {"groups": groups, "repeats2": repeats[0], "repeats3": repeats[1], "repeats4": repeats[2], "width": width}
    window = (budget * fraction, budget)
    try:
        spec = suggest_spec(FixedTrial(params), SMALL_SPACE, window)
    except NoFeasibleWidth:
        ladder = SMALL_SPACE.width_ladder(groups, repeats, 0.25, True)
        assert not [m for _, m in ladder if window[0] * 1e6 <= m <= window[1] * 1e6]
    else:
        assert window[0] * 1e6 <= count_macs(spec) <= window[1] * 1e6
        assert spec.groups == groups and spec.repeats == repeats


def test_width_picks_narrowest_to_widest_feasible_and_records_what_a_person_reads():
    base = {"groups": 3, "repeats2": 4, "repeats3": 8, "repeats4": 4}
    narrow = suggest_spec(FixedTrial({**base, "width": 0.0}), SearchSpace(), (0, 40))
    wide = suggest_spec(FixedTrial({**base, "width": 1.0}), SearchSpace(), (0, 40))
    assert wide == get_preset("shufflenet_v1_x0_5_g3")  # 37.6 MFLOPs: the widest g3 under 40
    assert count_macs(narrow) < count_macs(wide)
    for width in (0.2, 0.5, 0.75):
        trial = FixedTrial({**base, "width": width})
        spec = suggest_spec(trial, SearchSpace(), (0, 40))
        used = trial.user_attrs["budget_used"]  # readable beside the index: the share it spends, its scale
        assert used == count_macs(spec) / 40e6 and trial.user_attrs["scale"] == spec.scale


def test_presets_round_trip_through_trial_params():
    for name, spec in paper_models().items():
        window = (0, count_macs(spec) / 1e6 + 0.01)
        params = SearchSpace(scale=(0.1, 2.0)).to_params(spec, window)
        assert params is not None, name
        assert suggest_spec(FixedTrial(params), SearchSpace(scale=(0.1, 2.0)), window) == spec


def test_candidate_count_is_exhaustive():
    window = (6.5, 13.0)
    candidates = SMALL_SPACE.candidates(window)
    assert len(candidates) == len(set(candidates)) > 10
    assert all(6.5e6 <= count_macs(c) <= 13e6 for c in candidates)


def write(tmp_path, text: str, name: str = "s.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[study]\nname = 'x'\ncolour = 'red'\n", ":3: study.colour: unknown key"),
        ("[study]\nname = 'x'\n[spaces]\n", ":3: [spaces]: unknown section"),
        ("[space]\ngroups = []\n[budget]\nmflops = [40]\n", ":2: space.groups: is empty"),
        ("[space]\ngroups = [5]\n[budget]\nmflops = [40]\n", ":2: space.groups: 5 is not a ShuffleNet v1 group"),
        ("[budget]\nmflops = [0.5]\n", ":2: budget.mflops: budget 0.5 MFLOPs: the cheapest spec of the space costs"),
        ("[budget]\nmflops = [5000]\n", ":2: budget.mflops: budget window 2500-5000 MFLOPs lies above the largest"),
        ("[budget]\n\nmflops = ['a']\n", ":3: budget.mflops: expected a list of"),
        ("[study]\nmode = 'pareto'\npruner = 'hyperband'\n", ":3: study.pruner: multi-objective"),
        ("[study]\nmode = 'pareto'\n[budget]\nrange = [150, 10]\n", ":4: budget.range: [150, 10] must be"),
        ("[study]\ntrials = 0\n[budget]\nmflops = [40]\n", ":2: study.trials: 0 must be"),
        ("[study]\nname = '../etc'\n", ":2: study.name:"),
        (
            "[budget]\nmflops = [40]\n[accuracy.fidelity]\nepochz = 3\n",
            ":4: accuracy.fidelity.epochz: unknown fidelity key 'epochz'",
        ),
        ("[budget]\nmflops = [40]\n[accuracy.fidelity]\nlr = 0.1\n\nepochs = 0\n", ":6: accuracy.fidelity.epochs:"),
        (
            "[budget]\nmflops = [40]\n[accuracy]\ndataset = 'cifar10'\nfidelity = { lr = -1 }\n",
            ":5: accuracy.fidelity.lr:",
        ),
        ('[budget]\nmflops = [40]\n[objective]\nlut = "a\\u0000b"\n', ":4: objective.lut: 'a\\x00b' holds the control"),
        ('[budget]\nmflops = [40]\n[study]\nstorage = "sqlite:///\\u0000x"\n', ":4: study.storage: "),
        ('[budget]\nmflops = [40]\n[accuracy]\ndata_dir = "data\\nx"\n', ":4: accuracy.data_dir: "),
        ("a = " + "[" * 100_000, "nested too deeply"),
        ("[space]\ngroups = " + "{ a = " * 100_000, "nested too deeply"),
        ("[budget]\nmflops = [40]\n[space]\nrepeats = [[2, 6], [4, 10]]\n", ":4: space.repeats:"),
        ("[study\n", "not valid TOML"),
        (
            "[objective]\nsecond = 'latency'\n[study]\nmode='pareto'\n",
            ":2: objective.second: a latency objective needs",
        ),
        ("[budget]\nmflops = [40]\n[accuracy]\ndevice = 'gpu'\n", ":4: accuracy.device: 'gpu' is not a device"),
        ("[budget]\nmflops = [40]\n[study]\nkeep_weights = 'some'\n", ":4: study.keep_weights: 'some' is not one of"),
        ("[budget]\nmflops = [40]\n[study]\nartifacts = ' '\n", ":4: study.artifacts: is empty"),
    ],
)
def test_invalid_study_files_name_the_line_and_key(tmp_path, text, fragment):
    with pytest.raises(StudyFileError) as info:
        load_study(write(tmp_path, text))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_pipe_device_folder_or_huge_study_file_is_refused_unread(tmp_path):
    """A FIFO would block the read forever and /dev/zero fill memory: a study file is a regular file of <= 1 MB."""
    os.mkfifo(tmp_path / "pipe.toml")
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"#" * (2**20 + 1))
    cases = {tmp_path / "pipe.toml": "is a FIFO", "/dev/zero": "is a character device", tmp_path: "is a folder",
             huge: "is larger than 1 MB"}  # fmt: skip
    for path, fragment in cases.items():
        with pytest.raises(StudyFileError, match=fragment):
            load_study(path)


def test_study_files_name_a_device_a_weights_policy_and_an_artifact_store(tmp_path):
    config = load_study(write(tmp_path, "[budget]\nmflops = [40]\n"))
    assert (config.device, config.keep_weights) == ("auto", "best")
    assert config.artifact_location() == str(tmp_path / "s.artifacts")  # beside the study file, like its .db
    text = "[study]\nkeep_weights = 'all'\nartifacts = 's3://team-bucket'\n[budget]\nmflops = [40]\n[accuracy]\ndevice = 'cuda:1'\n"
    config = load_study(write(tmp_path, text))
    assert (config.device, config.keep_weights, config.artifact_location()) == ("cuda:1", "all", "s3://team-bucket")


def test_shipped_studies_are_valid():
    from pathlib import Path

    files = sorted(Path(__file__).parents[1].glob("studies/*.toml"))
    assert len(files) >= 4
    for path in files:
        config = load_study(path)
        assert all(config.space.candidates(w) for w in config.budget_windows().values()), path


@settings(max_examples=100)
@given(st.text(max_size=200))
def test_any_text_is_a_study_or_a_one_line_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "f.toml"
    path.write_text(text)
    try:
        load_study(path)
    except StudyFileError as exc:
        assert "\n" not in str(exc)


def test_tickets_are_queued_one_ahead_up_to_exactly_n_presets_first(tmp_path):
    config = load_study(write(tmp_path, "[study]\nname = 'q'\ntrials = 5\n[budget]\nmflops = [40]\n"))
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'q.db'}")
    ((name, window),) = config.budget_windows().items()
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    claimed = []
    for _ in range(7):  # two more claims than tickets: the last two find nothing to take
        assert prepare_study(config, study, window, 5)["queued"] <= 1
        assert prepare_study(config, study, window, 5)["queued"] == 0  # idempotent: a second worker adds nothing
        waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
        assert len(waiting) <= 1
        if waiting:  # a worker claims it (Optuna pops the oldest queued trial)
            study.optimize(lambda trial: 0.5, n_trials=1)
            claimed.append(study.trials[-1].user_attrs.get("preset"))
    assert len(study.trials) == len(claimed) == 5
    assert claimed[0] in {"shufflenet_v1_x0_5_g3", "paper_x0_5_g1", "paper_x0_5_g2", "paper_x0_5_g4"}  # fit 20-40


def test_pareto_front_keeps_only_undominated():
    records = [{"top1": a, "mflops": m} for a, m in [(0.5, 10), (0.6, 20), (0.55, 30), (0.7, 40), (0.4, 5)]]
    assert [(r["top1"], r["mflops"]) for r in pareto_front(records)] == [(0.4, 5), (0.5, 10), (0.6, 20), (0.7, 40)]


def test_the_trainer_reports_per_epoch_top1_for_pruning(tmp_path, monkeypatch):
    from shufflesearch.accuracy.datasets import load_dataset
    from shufflesearch.accuracy.datasets.fashion_mnist import FASHION_MNIST_DIR
    from shufflesearch.accuracy.recipe import Fidelity
    from shufflesearch.search.objective import proxy_accuracy_evaluator
    from shufflesearch.search.study_file import StudyConfig

    if not FASHION_MNIST_DIR.exists():
        pytest.skip("Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    load_dataset("fashion-mnist")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # a cached result would train nothing and report nothing
    tiny = Fidelity(train_images=256, epochs=2, batch_size=64, eval_images=200, curve_eval_images=100)
    config = StudyConfig(name="p", path=Path("p.toml"), fidelity=tiny, keep_weights="none")
    reports = []
    evaluate = proxy_accuracy_evaluator(config)
    evaluate(SMALL_SPACE.spec(3, (1, 1, 1), 0.25), lambda step, top1, loss: reports.append((step, top1, loss)))
    assert [step for step, _, _ in reports] == [1, 2] and all(0 <= top1 <= 1 and loss > 0 for _, top1, loss in reports)


def test_latency_objective_needs_a_readable_table(tmp_path):
    from shufflesearch.latency.lut import LutError
    from shufflesearch.search.objective import latency_table

    text = "[study]\nmode = 'pareto'\n[objective]\nsecond = 'latency'\nlut = '{}'\n"
    config = load_study(write(tmp_path, text.format(tmp_path / "missing.lut.json")))
    with pytest.raises(LutError, match="does not exist; build one: shufflesearch lut build"):
        latency_table(config)
    (tmp_path / "foreign.lut.json").write_text('{"hello": 1}')
    with pytest.raises(LutError, match="not a shufflesearch latency table"):
        latency_table(load_study(write(tmp_path, text.format(tmp_path / "foreign.lut.json"))))
    assert latency_table(load_study(write(tmp_path, "[study]\nmode = 'pareto'\n"))) is None


def test_loading_a_study_file_imports_neither_torch_nor_optuna():
    from fresh_process import heavy_imports

    code = "from shufflesearch.search.study_file import load_study; load_study('studies/demo.toml')"
    assert heavy_imports(code, ("torch", "optuna", "matplotlib", "typer")) == []


def test_storage_urls_are_checked_before_anything_is_opened(tmp_path):
    from shufflesearch.search.storage import StorageError, check_storage_url

    (tmp_path / "notes.txt").write_text("not a database")
    (tmp_path / "new.db").touch()  # empty: a database being created
    for url, fragment in [(" ", "--storage is empty"), ("sqlite:///", "names a folder"),
                          (f"sqlite:///{tmp_path}", "names a folder"),
                          (f"sqlite:///{tmp_path}/notes.txt", "is not an SQLite database")]:  # fmt: skip
        with pytest.raises(StorageError, match=fragment):
            check_storage_url(url)
    for url in (f"sqlite:///{tmp_path}/new.db", f"sqlite:///{tmp_path}/absent.db", "postgresql://u@host/db"):
        assert check_storage_url(url) == url


def test_finished_studies_and_the_stored_list(tmp_path):
    import sqlite3

    from shufflesearch.search import stored_studies, study_finished
    from shufflesearch.search.queue import run_worker
    from shufflesearch.search.storage import StorageError

    path = write(tmp_path, "[study]\nname = 'f'\ntrials = 2\nenqueue_presets = false\n[budget]\nmflops = [13, 40]\n",
                 "f.toml")  # fmt: skip
    config = load_study(path)
    url = config.default_storage()
    assert not study_finished(config, url, 2)  # no database yet
    run_worker(config, url, 2, lambda spec, report: {"top1": 0.5})
    assert study_finished(config, url, 2) and not study_finished(config, url, 3)
    with sqlite3.connect(tmp_path / "other.db") as connection:
        connection.execute("CREATE TABLE notes (text)")
    (tmp_path / "new.db").touch()
    rows, warnings = stored_studies(folder=tmp_path)
    assert [(r["storage"], r["name"], r["complete"]) for r in rows] == [(url, "f-13M", 2), (url, "f-40M", 2)]
    assert len(warnings) == 1 and warnings[0].startswith("skipped ") and "other.db" in warnings[0]
    assert stored_studies(url)[0] == rows
    with pytest.raises(StorageError, match="another program"):
        stored_studies(f"sqlite:///{tmp_path / 'other.db'}")


def test_lut_validation_specs_are_ones_the_table_can_predict():
    from types import SimpleNamespace

    from shufflesearch.search.space import specs_for_table

    table = SimpleNamespace(resolution=96, num_classes=10, in_channels=1, stem="small")
    specs = specs_for_table(SMALL_SPACE, table, 5, seed=1)
    assert len(specs) == 5 and specs == specs_for_table(SMALL_SPACE, table, 5, seed=1)
    assert {(s.resolution, s.num_classes, s.in_channels, s.stem) for s in specs} == {(96, 10, 1, "small")}
    assert {s.groups for s in specs} <= set(SMALL_SPACE.groups)


def _weights_evaluator(tmp_path, top1s):
    """An evaluator that 'trains' to the given top-1s in turn and leaves a checkpoint file for the objective."""
    scores = iter(top1s)

    def evaluate(spec, report):
        folder = Path(tempfile.mkdtemp(dir=tmp_path))
        top1 = next(scores)
        (folder / "model.safetensors").write_text(f"weights of a net with top-1 {top1}")
        return {"top1": top1, "checkpoint": folder / "model.safetensors"}

    return evaluate


@pytest.mark.parametrize(("policy", "kept"), [("best", [2]), ("all", [0, 1, 2, 3]), ("none", [])])
def test_the_weights_policy_bounds_the_artifact_store(tmp_path, monkeypatch, policy, kept):
    from shufflesearch.search.artifacts import NoWeights, trial_checkpoint
    from shufflesearch.search.queue import run_worker

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    text = f"[study]\nname = 'w'\ntrials = 4\nenqueue_presets = false\nkeep_weights = '{policy}'\n[budget]\nmflops = [40]\n"
    config = load_study(write(tmp_path, text, "w.toml"))
    url = config.default_storage()
    run_worker(config, url, 4, _weights_evaluator(tmp_path, [0.5, 0.7, 0.8, 0.6]))
    store = tmp_path / "w.artifacts"
    assert len(list(store.iterdir()) if store.exists() else []) == len(kept)  # 0.5 and 0.7 were removed when beaten
    for number in range(4):
        if number in kept:
            path = trial_checkpoint(config, url, number)
            assert path.read_text() == f"weights of a net with top-1 {[0.5, 0.7, 0.8, 0.6][number]}"
            assert trial_checkpoint(config, url, number) == path  # cached by artifact id
        else:
            with pytest.raises(NoWeights) as error:
                trial_checkpoint(config, url, number)
            assert "\n" not in str(error.value)
            if policy == "best":
                assert str(error.value).endswith("trials with weights: 2")
                if number in (0, 1):
                    assert f"removed when trial {number + 1} beat it" in str(error.value)
    assert not list(tmp_path.glob("tmp*/*"))  # the objective cleans up every temporary checkpoint


def test_a_winner_is_found_per_budget_and_a_missing_one_named(tmp_path):
    from shufflesearch.search.queue import run_worker
    from shufflesearch.search.results import NoSuchTrial, find_trial

    text = "[study]\nname = 'b'\ntrials = 2\nenqueue_presets = false\n[budget]\nmflops = [13, 40]\n"
    config = load_study(write(tmp_path, text, "b.toml"))
    url = config.default_storage()
    with pytest.raises(NoSuchTrial, match="has no trials"):
        find_trial(config, url, budget=40)
    scores = iter([0.3, 0.4, 0.9, 0.2])
    run_worker(config, url, 2, lambda spec, report: {"top1": next(scores)})
    assert [find_trial(config, url, budget=b)[1]["top1"] for b in (13, 40)] == [0.4, 0.9]
    assert find_trial(config, url, budget=40, trial=1)[1]["top1"] == 0.2
    for kwargs, fragment in [({}, "has budgets 13, 40 MFLOPs: name one with --budget"),
                             ({"budget": 20}, "--budget 20: study b has budgets 13, 40"),
                             ({"budget": 13, "trial": 7}, "trial 7 of b-13M does not exist")]:  # fmt: skip
        with pytest.raises(NoSuchTrial, match=fragment):
            find_trial(config, url, **kwargs)


TINY_STUDY = """[study]
name = '{name}'
trials = {trials}
enqueue_presets = false
keep_weights = 'best'
repeat_specs = true  # every trial trains the same spec, on purpose
[budget]
mflops = [40]
[accuracy.fidelity]
train_images = 256
epochs = 1
batch_size = 64
eval_images = 200
curve_eval_images = 100
"""


def test_a_cached_result_trains_again_only_for_weights_the_policy_keeps(tmp_path, monkeypatch):
    from shufflesearch.accuracy import trainer
    from shufflesearch.accuracy.datasets.fashion_mnist import FASHION_MNIST_DIR
    from shufflesearch.search import objective
    from shufflesearch.search.queue import run_worker

    if not FASHION_MNIST_DIR.exists():
        pytest.skip("Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a real cache, empty at first
    spec = SMALL_SPACE.spec(3, (1, 1, 1), 0.25)
    # every trial: this spec
    monkeypatch.setattr(objective, "suggest_spec", lambda trial, space, window, latency=None: spec)
    trained = []
    real = trainer.train_proxy
    monkeypatch.setattr(trainer, "train_proxy", lambda *a, **k: trained.append(k["keep_weights"]) or real(*a, **k))

    def trials_of(config):
        (name,) = config.budget_windows()
        return optuna.load_study(study_name=name, storage=config.default_storage()).get_trials()

    beaten = load_study(write(tmp_path, TINY_STUDY.format(name="beaten", trials=2), "beaten.toml"))
    evaluate = objective.proxy_accuracy_evaluator(beaten)
    first = evaluate(spec, lambda step, top1, loss=None: None)  # fills the cache
    shutil.rmtree(first["checkpoint"].parent)
    assert trained == [True] and first["top1"] < 1.0
    run_worker(beaten, beaten.default_storage(), 1, lambda spec, report: {"top1": 1.0})  # the best so far
    run_worker(beaten, beaten.default_storage(), 2, evaluate)
    served = trials_of(beaten)[1].user_attrs
    assert trained == [True]  # not trained again: its weights would not be kept
    assert served["cached"] and served["top1"] == first["top1"] and "weights" not in served

    best = load_study(write(tmp_path, TINY_STUDY.format(name="best", trials=1), "best.toml"))
    run_worker(best, best.default_storage(), 1, evaluate)  # the same cached result, now its window's best
    kept = trials_of(best)[0].user_attrs
    assert trained == [True, True]  # trained again, for the weights it keeps
    assert not kept["cached"] and kept["top1"] == first["top1"] and "weights" in kept


class FailingStore:
    """An artifact store whose bucket is gone: what a cloud client raises is not an OSError."""

    def write(self, artifact_id, content_body):
        raise RuntimeError("bucket team-weights does not exist")

    def remove(self, artifact_id):
        raise RuntimeError("bucket team-weights does not exist")


def test_a_failing_artifact_store_costs_a_finished_trial_its_weights_not_its_score(tmp_path, monkeypatch):
    from shufflesearch.search import artifacts
    from shufflesearch.search.queue import run_worker

    monkeypatch.setattr(artifacts, "artifact_store", lambda config: FailingStore())
    config = load_study(write(tmp_path, TINY_STUDY.format(name="f", trials=2), "f.toml"))
    with pytest.warns(artifacts.WeightsNotKept) as warned:
        run_worker(config, config.default_storage(), 2, _weights_evaluator(tmp_path, [0.5, 0.7]))
    (name,) = config.budget_windows()
    trials = optuna.load_study(study_name=name, storage=config.default_storage()).get_trials()
    assert [(t.state.name, t.value) for t in trials] == [("COMPLETE", 0.5), ("COMPLETE", 0.7)]
    for t in trials:
        assert "bucket team-weights does not exist" in t.user_attrs["weights_error"] and "weights" not in t.user_attrs
        assert "errors" not in t.user_attrs
    assert len(warned) == 2 and all("\n" not in str(w.message) for w in warned)
    assert "cannot keep trial 0's weights" in str(warned[0].message)
    assert not list(tmp_path.glob("tmp*/*"))  # the temporary checkpoints are still cleaned up


def test_a_damaged_cache_entry_in_a_search_is_trained_again(tmp_path, monkeypatch):
    from shufflesearch.accuracy.cache import ResultCache, result_key
    from shufflesearch.accuracy.datasets import load_dataset
    from shufflesearch.accuracy.datasets.fashion_mnist import FASHION_MNIST_DIR
    from shufflesearch.accuracy.recipe import adapt_spec
    from shufflesearch.accuracy.trainer import TRAINER_VERSION
    from shufflesearch.search import objective

    if not FASHION_MNIST_DIR.exists():
        pytest.skip("Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    config = load_study(write(tmp_path, TINY_STUDY.format(name="damaged", trials=1), "damaged.toml"))
    spec = SMALL_SPACE.spec(3, (1, 1, 1), 0.25)
    dataset = load_dataset(config.dataset, config.data_dir)
    key = result_key(adapt_spec(spec, dataset, config.fidelity), dataset.fingerprint, config.fidelity, config.seed,
                     TRAINER_VERSION, "cpu")  # fmt: skip
    ResultCache().put(key, {"top1": "not a number", "curve": 3})  # what a damaged entry reads back as
    with pytest.warns(Warning, match="(?i)damaged"):
        result = objective.proxy_accuracy_evaluator(config, device="cpu")(spec, lambda step, top1, loss=None: None)
    shutil.rmtree(result["checkpoint"].parent)
    assert 0 <= result["top1"] <= 1 and not result["cached"]


def test_a_study_database_another_worker_is_creating_is_not_another_programs_file(tmp_path):
    # SQLite creates Optuna's tables one by one: a worker that opens the file in between saw a
    # "foreign" file and gave up (seen in CI with three workers started together).
    import sqlite3

    import optuna

    from shufflesearch.search.storage import NoSuchStorage, StorageError, open_storage

    partial = tmp_path / "partial.db"
    with sqlite3.connect(partial) as connection:
        connection.execute("CREATE TABLE studies (study_id INTEGER)")
        connection.execute("CREATE TABLE study_directions (x)")
    with pytest.raises(NoSuchStorage, match="holds no studies yet"):  # a reader: nothing to read yet
        open_storage(f"sqlite:///{partial}", create=False)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE studies (study_id INTEGER)")
        connection.execute("CREATE TABLE notes (text)")  # not Optuna's: another program's file
    with pytest.raises(StorageError, match="another program"):
        open_storage(f"sqlite:///{foreign}")
    # A writer that meets Optuna's first tables, as another worker's create_all left them, completes the study.
    import sqlalchemy
    from optuna.storages._rdb import models

    fresh = tmp_path / "fresh.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{fresh}")
    for name in ("version_info", "studies", "study_directions"):
        models.BaseModel.metadata.tables[name].create(engine)
    engine.dispose()
    storage = open_storage(f"sqlite:///{fresh}")
    assert optuna.create_study(storage=storage, study_name="s").study_name == "s"
    storage.engine.dispose()

"""The objective is a choice: a study ranks its trials by proxy top-1 (maximised) or by the proxy's
loss (minimised), on the recipe's split; what it stored says which, and every winner follows it."""

from __future__ import annotations

import textwrap

import optuna
import pytest

from shufflesearch.report.frames import SEARCHED, build_frames
from shufflesearch.search import load_study
from shufflesearch.search.objective import directions, objectives
from shufflesearch.search.queue import run_worker
from shufflesearch.search.results import find_trial, load_records, study_attrs, summarize_studies
from shufflesearch.search.study_file import StudyFileError

# Stand-in scores, on purpose in disagreement: the highest top-1 is not the lowest loss.
TOP1 = [0.80, 0.70, 0.75]
LOSS = [0.60, 0.40, 0.50]


def _study(tmp_path, rank_by: str, extra: str = ""):
    text = f"""\
        [study]
        name = 'r'
        trials = 3
        enqueue_presets = false
        pruner = 'median'
        {extra}
        [budget]
        mflops = [40]
        [objective]
        rank_by = '{rank_by}'
        """
    path = tmp_path / "r.toml"
    path.write_text(textwrap.dedent(text))
    return load_study(path)


def _evaluator():
    scores = iter(zip(TOP1, LOSS, strict=True))

    def evaluate(spec, report):
        top1, loss = next(scores)
        report(1, top1 - 0.1, loss + 0.1)  # one epoch's curve-subset figures, as the trainer reports them
        return {"top1": top1, "test_loss": loss}

    return evaluate


def test_a_loss_ranked_study_minimises_the_loss_and_picks_its_winner_by_it(tmp_path):
    config = _study(tmp_path, "loss")
    assert (directions(config), objectives(config)) == (["minimize"], ["loss"])
    url = config.default_storage()
    run_worker(config, url, 3, _evaluator())
    study = optuna.load_study(study_name="r-40M", storage=url)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE and study.user_attrs["objectives"] == ["loss"]
    assert [t.value for t in study.trials] == LOSS  # the value Optuna optimises is the loss
    assert [t.intermediate_values for t in study.trials] == [{1: loss + 0.1} for loss in LOSS]  # pruned on loss
    records = load_records(url)["r-40M"]
    assert [r["intermediate"] for r in records] == [{1: pytest.approx(t - 0.1)} for t in TOP1]  # shown as top-1
    assert find_trial(config, url)[1]["trial"] == 1  # lowest loss, not the highest top-1 (trial 0)
    assert summarize_studies(url)[0].best_top1 == 0.70
    frames = build_frames(load_records(url), study_attrs(url))
    searched = frames.best[frames.best.kind == SEARCHED]
    assert searched.trial.tolist() == [1] and any("by the proxy's loss" in n for n in frames.notes)


def test_a_top1_ranked_study_is_as_before(tmp_path):
    config = _study(tmp_path, "top1")
    assert (directions(config), objectives(config)) == (["maximize"], ["top1"])
    url = config.default_storage()
    run_worker(config, url, 3, _evaluator())
    study = optuna.load_study(study_name="r-40M", storage=url)
    assert [t.value for t in study.trials] == TOP1
    assert find_trial(config, url)[1]["trial"] == 0
    frames = build_frames(load_records(url), study_attrs(url))
    assert frames.best[frames.best.kind == SEARCHED].trial.tolist() == [0]
    assert not any("by the proxy's loss" in n for n in frames.notes)


def test_a_stored_study_keeps_its_ranking(tmp_path):
    config = _study(tmp_path, "top1")
    run_worker(config, config.default_storage(), 1, _evaluator())
    from shufflesearch.search.objective import StudyMismatch

    with pytest.raises(StudyMismatch, match=r"top1 \(maximize\).*asks for a per-budget study of loss \(minimize\)"):
        run_worker(_study(tmp_path, "loss"), config.default_storage(), 1, _evaluator())


def test_a_pareto_study_ranks_by_loss_then_cost(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[study]\nmode = 'pareto'\n[objective]\nrank_by = 'loss'\n")
    config = load_study(path)
    assert (directions(config), objectives(config)) == (["minimize", "minimize"], ["loss", "mflops"])


def test_an_unknown_ranking_names_its_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[budget]\nmflops = [40]\n[objective]\nrank_by = 'top5'\n")
    with pytest.raises(StudyFileError, match=r"bad.toml:4: objective.rank_by: 'top5' is not one of top1, loss"):
        load_study(path)

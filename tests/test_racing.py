"""Racing the close calls: finalists get more seeds until the leader beats the runner-up beyond the
noise (a paired comparison on seeds), or the seed cap is reached. Stand-in scores here; the search
races with real training (tests/test_report.py's tiny study, BENCHMARKS.md's real one)."""

from __future__ import annotations

import textwrap

import optuna
import pytest

from shufflesearch.report.frames import SEARCHED, build_frames
from shufflesearch.report.races import race_lines
from shufflesearch.search import load_study
from shufflesearch.search.queue import run_worker
from shufflesearch.search.racing import paired_lead, race, race_window, races_due
from shufflesearch.search.results import find_trial, load_records, study_attrs, summarize_studies

SEEDS = [0, 1, 2, 3, 4]


def _stand_in(table):
    calls = []

    def score(trial, seed):
        calls.append((trial, seed))
        return table[trial][seed]

    return score, calls


def test_a_clear_leader_stops_the_race_early():
    table = {0: [0.85, 0.86, 0.85, 0.86, 0.85], 1: [0.80, 0.81, 0.80, 0.81, 0.80]}
    score, calls = _stand_in(table)
    result = race({0: {0: 0.85}, 1: {0: 0.80}}, score, SEEDS)
    assert result.winner == 0 and result.distinguishable and result.lead_lower_95 > 0
    assert calls == [(0, 1), (1, 1)] and result.extra_trainings == 2  # one more seed each settled it


def test_a_tie_races_to_the_cap_and_says_so():
    table = {0: [0.80, 0.81, 0.79, 0.80, 0.81], 1: [0.81, 0.80, 0.80, 0.79, 0.81]}
    score, _ = _stand_in(table)
    result = race({0: {0: 0.80}, 1: {0: 0.81}}, score, SEEDS)
    assert not result.distinguishable and result.extra_trainings == 8  # 4 more seeds each: the cap
    assert {len(s) for s in result.scores.values()} == {5} and result.lead_lower_95 < 0 < result.lead + 1


def test_a_finalist_beaten_clearly_stops_training_while_the_close_call_goes_on():
    table = {0: [0.85, 0.86, 0.84, 0.86, 0.85], 1: [0.85, 0.85, 0.86, 0.85, 0.84], 2: [0.70, 0.71, 0.70, 0.71, 0.70]}
    score, calls = _stand_in(table)
    result = race({t: {0: v[0]} for t, v in table.items()}, score, SEEDS)
    assert result.eliminated == {2: 2} and sum(t == 2 for t, _ in calls) == 1  # one seed more, then out
    assert len(result.scores[0]) == len(result.scores[1]) == 5 and not result.distinguishable
    assert result.runner_up in (0, 1) and result.winner in (0, 1)


def test_the_lead_is_paired_on_seeds():
    # A seed that is hard for both (seed 1) does not hide a lead that holds on every seed.
    assert paired_lead({0: 0.80, 1: 0.60, 2: 0.81}, {0: 0.79, 1: 0.59, 2: 0.80})[1] > 0
    assert paired_lead({0: 0.8}, {0: 0.7}) == (pytest.approx(0.1), None, 1)  # one pair: no noise estimate


def _study(tmp_path, finalists=3, race_seeds=4):
    text = f"""\
        [study]
        name = 'race'
        trials = 4
        enqueue_presets = false
        finalists = {finalists}
        race_seeds = {race_seeds}
        [budget]
        mflops = [40]
        """
    (tmp_path / "race.toml").write_text(textwrap.dedent(text))
    return load_study(tmp_path / "race.toml")


def test_a_stored_race_picks_the_winner_everywhere_and_the_report_says_what_it_changed(tmp_path):
    config = _study(tmp_path)
    url = config.default_storage()
    search = iter([0.800, 0.805, 0.700, 0.790])  # trial 1 wins the single-seed search by a hair
    run_worker(config, url, 4, lambda spec, report: {"top1": next(search), "test_loss": 0.5})
    labels = {r["trial"]: r["label"] for r in load_records(url)["race-40M"]}
    later = {0: 0.83, 1: 0.79, 3: 0.78}  # ... and loses every later seed to trial 0

    def train(spec, seed):
        trial = next(t for t, label in labels.items() if label == _label(spec))
        return {"top1": later[trial] + 0.001 * seed, "test_loss": 0.5}

    stored = race_window(config, url, "race-40M", train)
    assert stored["winner"] == 0 and stored["search_winner"] == 1 and stored["distinguishable"]
    assert set(stored["scores"]) == {"0", "1", "3"}  # the best three; trial 2 was no finalist
    assert optuna.load_study(study_name="race-40M", storage=url).user_attrs["race"] == stored
    assert find_trial(config, url)[1]["trial"] == 0 and summarize_studies(url)[0].best_top1 == 0.800
    frames = build_frames(load_records(url), study_attrs(url))
    assert frames.best[frames.best.kind == SEARCHED].trial.tolist() == [0]
    assert frames.races.trial.tolist()[0] == 0 and frames.races.ended.tolist()[0] == "winner"
    (line,) = race_lines(frames.races)
    assert "picked trial 0" in line and "distinguishable from the runner-up" in line
    assert "racing changed the winner from trial 1" in line and "picking by parameter count alone" in line


def test_a_race_needs_two_distinct_finalists(tmp_path):
    config = _study(tmp_path)
    url = config.default_storage()
    never = lambda spec, seed: pytest.fail("nothing to race")  # noqa: E731
    assert race_window(config, url, "race-40M", never) is None  # no storage yet: nothing to race or to say
    run_worker(config, url, 1, lambda spec, report: {"top1": 0.8, "test_loss": 0.5})
    assert race_window(config, url, "race-13M", never) is None  # no such study in it
    assert races_due(config, url)
    assert race_window(config, url, "race-40M", never) is None
    assert not races_due(config, url)  # said on the study: a finished study is not raced again and again
    assert find_trial(config, url)[1]["trial"] == 0


def test_study_files_bound_the_race(tmp_path):
    assert (_study(tmp_path, 2, 6).finalists, _study(tmp_path, 2, 6).race_seeds) == (2, 6)
    from shufflesearch.search.study_file import StudyFileError

    with pytest.raises(StudyFileError, match=r"study.race_seeds: 0 must be in \[1, 50\]"):
        _study(tmp_path, 3, 0)


def _label(spec: dict) -> str:
    from shufflesearch.spec import ShuffleNetSpec

    return ShuffleNetSpec.from_dict(spec).label

"""Racing the close calls: a budget's finalists get more seeds until the leader beats the runner-up
beyond the noise, or the seed cap is reached.

One proxy run per spec is a noisy score (docs/fidelity.md: 0.36 points of top-1 between seeds on
average, 0.95 at most), and near-equals sit closer than that. After a budget's search, its best
`finalists` trials are trained again with the next seeds, all of them on the same seeds so that
they compare pair by pair (a seed that favours one net tends to favour its rival too). The race
ends when the leader's paired lead over the runner-up has a one-sided 95% lower bound above zero
(`paired_lead`), or when every contender has `race_seeds` seeds: then the winner is the best mean
and is said to be indistinguishable from the runner-up. A finalist the leader already beats that
clearly stops training, so the cost goes where the decision is close.

>>> scores = {0: {0: 0.80, 1: 0.81, 2: 0.80}, 1: {0: 0.70, 1: 0.71, 2: 0.70}}
>>> race(scores, lambda trial, seed: scores[trial][seed], seeds=[0, 1, 2]).distinguishable
True
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

__all__ = ["RACE_ATTR", "Race", "paired_lead", "proxy_race_trainer", "race", "race_window", "race_windows", "races_due",
           "t_critical"]  # fmt: skip

# One-sided 95% quantiles of Student's t by degrees of freedom (1-30); the normal's beyond.
_T95 = (6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782, 1.771, 1.761, 1.753,
        1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703, 1.701, 1.699, 1.697)  # fmt: skip


def t_critical(df: int) -> float:
    """The one-sided 95% quantile of Student's t with `df` degrees of freedom.

    >>> t_critical(1), t_critical(4), t_critical(1000)
    (6.314, 2.132, 1.645)
    """
    return _T95[df - 1] if df <= len(_T95) else 1.645


def paired_lead(leader: dict[int, float], other: dict[int, float]) -> tuple[float, float | None, int]:
    """(mean lead, one-sided 95% lower bound of the lead, seeds compared) of `leader` over `other`
    on the seeds both were scored with (higher scores are better). The bound is None below two
    seeds: one pair says nothing about the noise.

    >>> paired_lead({0: 0.8, 1: 0.9}, {0: 0.7, 1: 0.8})  # the same lead on both seeds: no doubt left
    (0.1, 0.1, 2)
    """
    seeds = sorted(set(leader) & set(other))
    diffs = [leader[s] - other[s] for s in seeds]
    if not diffs:
        return math.nan, None, 0
    mean = round(statistics.fmean(diffs), 12)
    if len(diffs) < 2:
        return mean, None, 1
    spread = statistics.stdev(diffs)
    return mean, round(mean - t_critical(len(diffs) - 1) * spread / math.sqrt(len(diffs)), 12), len(diffs)


@dataclass(frozen=True)
class Race:
    """A finished race: every finalist's scores by seed, the winner, and whether the lead is real."""

    scores: dict[int, dict[int, float]]  # trial -> seed -> score (higher is better)
    winner: int  # the trial with the best mean score among those not clearly beaten
    runner_up: int | None
    distinguishable: bool  # every other finalist was clearly beaten (a paired lead above the noise)
    lead: float | None  # the winner's mean paired lead over the runner-up
    lead_lower_95: float | None
    extra_trainings: int  # trainings the race added to the search's
    eliminated: dict[int, int] = field(default_factory=dict)  # trial -> seeds it had when the leader beat it clearly

    def to_dict(self) -> dict:
        """JSON-able (trial numbers and seeds as text keys, as a study attribute stores them)."""
        data = asdict(self)
        data["scores"] = {str(t): {str(s): v for s, v in by_seed.items()} for t, by_seed in self.scores.items()}
        data["eliminated"] = {str(t): n for t, n in self.eliminated.items()}
        return data


def race(scores: dict[int, dict[int, float]], score: Callable[[int, int], float], seeds: Sequence[int]) -> Race:
    """Race the finalists `scores` (trial -> seed -> score, each holding at least its search score)
    over `seeds` (in order; the cap is their count): `score(trial, seed)` trains one more run.

    Each round, every finalist not yet clearly beaten by the leader gets the next seed it lacks;
    the race stops on a clear leader or at the cap. Ties keep the lower trial number first.
    """
    if len(scores) < 1 or any(not by_seed for by_seed in scores.values()):
        raise ValueError("a race needs finalists, each with at least one score")
    scores = {t: dict(by_seed) for t, by_seed in scores.items()}
    eliminated: dict[int, int] = {}
    extra = 0
    while True:
        contenders = [t for t in scores if t not in eliminated]
        ranked = sorted(contenders, key=lambda t: (-statistics.fmean(scores[t].values()), t))
        leader = ranked[0]
        for other in ranked[1:]:
            lower = paired_lead(scores[leader], scores[other])[1]
            if lower is not None and lower > 0:
                eliminated[other] = len(scores[other])
        if len(ranked) == 1 or all(t in eliminated for t in ranked[1:]):
            break
        wanted = [(t, next((s for s in seeds if s not in scores[t]), None)) for t in scores if t not in eliminated]
        if all(seed is None for _, seed in wanted):
            break  # every contender has every seed: the cap
        for trial, seed in wanted:
            if seed is not None:
                scores[trial][seed] = score(trial, seed)
                extra += 1
    # The contenders by mean, then those beaten clearly (their fewer seeds must not flatter them).
    order = sorted(scores, key=lambda t: (t in eliminated, -statistics.fmean(scores[t].values()), t))
    winner, runner_up = order[0], (order[1] if len(order) > 1 else None)
    lead, lower, _ = paired_lead(scores[winner], scores[runner_up]) if runner_up is not None else (None, None, 0)
    return Race(scores=scores, winner=winner, runner_up=runner_up, distinguishable=all(t in eliminated for t in order[1:]),
                lead=lead, lead_lower_95=lower, extra_trainings=extra, eliminated=eliminated)  # fmt: skip


# What a diverged run scores in a race: a top-1 of zero, a loss no finished run reaches.
DIVERGED_TOP1, DIVERGED_LOSS = 0.0, 1e9
RACE_ATTR = "race"  # the study attribute a window's finished race is stored in


def race_window(config, storage_url: str, name: str, train: Callable[[dict, int], dict],
                on_step: Callable[[str], None] | None = None) -> dict | None:  # fmt: skip
    """Race study `name`'s best `config.finalists` trials over seeds `config.seed`, +1, ... up to
    `config.race_seeds` seeds each; store the race on the study (`RACE_ATTR`) and return it.

    `train(spec_dict, seed)` runs the proxy once: a dict with "top1" and "test_loss" (None: diverged).
    None when there is nothing to race (fewer than two distinct complete specs).
    """
    from .objective import spec_key
    from .results import load_records
    from .standing import rank_value
    from .storage import NoSuchStorage

    rank_by = config.rank_by
    try:
        records = load_records(storage_url, [name]).get(name)
    except NoSuchStorage:
        records = None
    if records is None:  # no such study (a search stopped before it made one): nothing to race or to say
        return None
    done = [r for r in records
            if r["state"] == "complete" and r["spec"] is not None and rank_value(r, rank_by) is not None]  # fmt: skip
    best_first = sorted(done, key=lambda r: (-rank_value(r, rank_by), r["trial"]))
    finalists, seen = [], set()
    for r in best_first:  # a spec trained twice (repeat_specs) races once, by its best trial
        if spec_key(r["spec"]) not in seen:
            seen.add(spec_key(r["spec"]))
            finalists.append(r)
    finalists = finalists[: config.finalists]
    if len(finalists) < 2:  # said on the study, so a finished study is not raced again and again
        _store(storage_url, name, {"skipped": f"{len(finalists)} distinct complete spec(s): nothing to race"})
        return None
    by_trial = {r["trial"]: r for r in finalists}
    from ..accuracy.recipe import SEED_MAX

    seeds = [(config.seed + i) % (SEED_MAX + 1) for i in range(config.race_seeds)]

    def score(trial: int, seed: int) -> float:
        outcome = train(by_trial[trial]["spec"], seed)
        value = rank_value({"top1": outcome.get("top1"), "loss": outcome.get("test_loss")}, rank_by)
        if value is None:
            value = DIVERGED_TOP1 if rank_by == "top1" else -DIVERGED_LOSS
        if on_step is not None:
            on_step(f"race {name}: trial {trial} ({by_trial[trial]['label']}) seed {seed}: "
                    + (f"top-1 {100 * value:.2f}%" if rank_by == "top1" else f"loss {-value:.4f}"))  # fmt: skip
        return value

    result = race({r["trial"]: {config.seed: rank_value(r, rank_by)} for r in finalists}, score, seeds)
    with_params = [r for r in done if r["params"] is not None]
    params_pick = max(with_params, key=lambda r: (r["params"], -r["trial"]), default=None)
    stored = {**result.to_dict(), "rank_by": rank_by, "seeds": seeds, "search_winner": finalists[0]["trial"],
              "labels": {str(t): r["label"] for t, r in by_trial.items()},
              "params_pick": params_pick["trial"] if params_pick else None,
              "params_pick_label": params_pick["label"] if params_pick else None}  # fmt: skip
    _store(storage_url, name, stored)
    return stored


def _store(storage_url: str, name: str, race: dict) -> None:
    import optuna

    from .storage import open_storage

    storage = open_storage(storage_url)
    try:
        optuna.load_study(study_name=name, storage=storage).set_user_attr(RACE_ATTR, race)
    finally:
        storage.engine.dispose()


def races_due(config, storage_url: str) -> bool:
    """Whether a finished study still has a window to race (racing is on and a window stores no race)."""
    from .results import study_attrs

    if config.mode != "per-budget" or config.finalists < 2 or config.race_seeds < 2:
        return False
    stored = study_attrs(storage_url)
    return any(RACE_ATTR not in stored.get(name, {}) for name in config.budget_windows())


def race_windows(config, storage_url: str, device: str, on_step: Callable[[str], None] | None = None) -> dict:
    """Race every budget window of a per-budget study (`config.finalists` >= 2 and `config.race_seeds` >= 2),
    training on `device`; study name -> its stored race. Trainings are cached: racing again is cheap."""
    if config.mode != "per-budget" or config.finalists < 2 or config.race_seeds < 2:
        return {}
    import dataclasses

    races, trainers = {}, {}  # one trainer per recipe: each loads the data once
    for name in config.budget_windows():  # each window races with the recipe its candidates trained with
        recipe = config.window_fidelity(name)
        if recipe not in trainers:
            own = dataclasses.replace(config, fidelity=recipe, fidelity_by_budget=())
            trainers[recipe] = proxy_race_trainer(own, device)
        races[name] = race_window(config, storage_url, name, trainers[recipe], on_step)
    return {name: stored for name, stored in races.items() if stored is not None}


def proxy_race_trainer(config, device: str) -> Callable[[dict, int], dict]:
    """`train(spec_dict, seed)` for a race: the study's own evaluator (`objective.proxy_accuracy_evaluator`:
    cached proxy runs of its recipe, Ctrl-C aware) at that seed, one thread, keeping no weights."""
    import dataclasses

    import optuna

    from ..spec import ShuffleNetSpec
    from . import objective

    evaluators: dict[int, Callable] = {}

    def train(spec: dict, seed: int) -> dict:
        if seed not in evaluators:
            seeded = dataclasses.replace(config, seed=seed, keep_weights="none")
            evaluators[seed] = objective.proxy_accuracy_evaluator(seeded, threads=1, device=device)
        try:
            return evaluators[seed](ShuffleNetSpec.from_dict(spec), lambda *_, **__: None)  # nothing to prune
        except optuna.TrialPruned:  # the run diverged at this seed
            return {"top1": None, "test_loss": None}

    return train

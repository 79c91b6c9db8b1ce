"""How a report's numbers were made, and what a reader must be warned of before trusting them.

`provenance_frame`: per study, the recipe its trials recorded (images, epochs, resolution, ...),
the split they were scored on, their seeds, devices and data (name and fingerprint), and the
fidelity measured for that recipe (`accuracy.measured_fidelity`), or that it was never measured.
`caveats`: sentences for results that contradict the paper's direction, accuracies near chance,
and studies that ran only their queued paper models.

>>> describe_recipe({"train_images": 2000, "epochs": 2, "resolution": 48, "stem": "imagenet", "batch_size": 128,
...              "lr": 0.2, "schedule": "onecycle", "augment": "crop-flip", "eval_images": None})
'2000 images x 2 epochs at 48 px (imagenet stem), batch 128, lr 0.2 onecycle, crop-flip; scored on the whole test split'
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from ..accuracy.measured_fidelity import measured_fidelity, resolving_verdict
from ..accuracy.ranking import spearman
from ..accuracy.recipe import describe_recipe, split_of
from .stored import chance_pct, stored_number, stored_text

PROVENANCE_COLUMNS = ["study", "trials", "recipe", "split", "seeds", "devices", "dataset", "trained_px", "fidelity",
                      "resolves", "resolving_power"]  # fmt: skip
NEAR_CHANCE_PTS = 5.0  # a top-1 within this many points of chance has learnt next to nothing


def _recipes(records: list[dict], attrs: dict) -> tuple[list[dict], bool]:
    """The recipes complete trials recorded (most common first), or the study file's (False: not recorded)."""
    done = [r for r in records if r.get("state") == "complete"]
    found = Counter(repr(sorted(r["recipe"].items())) for r in done if isinstance(r.get("recipe"), dict))
    if found:
        by_text = {repr(sorted(r["recipe"].items())): r["recipe"] for r in done if isinstance(r.get("recipe"), dict)}
        return [by_text[k] for k, _ in found.most_common()], True
    return ([attrs["recipe"]] if isinstance(attrs.get("recipe"), dict) else []), False


def provenance_frame(records_by_study: dict[str, list[dict]], study_attrs: dict[str, dict]) -> pd.DataFrame:
    """One row per study: how its proxy top-1 numbers were made and what that recipe's ranking is worth."""
    rows = []
    for study, records in records_by_study.items():
        attrs = study_attrs.get(study, {})
        done = [r for r in records if r.get("state") == "complete"]
        recipes, recorded = _recipes(records, attrs)
        recipe = recipes[0] if recipes else None
        text = describe_recipe(recipe) if recipe else "not recorded"
        if recipe and not recorded:
            text += " (from the study file: the trials did not record theirs)"
        elif len(recipes) > 1:
            text += f" (and {len(recipes) - 1} other recipe(s) in this study: its numbers do not compare)"
        seeds = sorted({int(s) for s in (stored_number(r.get("seed")) for r in done) if s is not None})
        if not seeds and stored_number(attrs.get("seed")) is not None:
            seeds = [int(attrs["seed"])]
        datasets = sorted({t for t in (stored_text(r.get("dataset")) for r in done) if t})
        name = (datasets[0].split(":")[0] if datasets else stored_text(attrs.get("dataset"))) or "?"
        measured = measured_fidelity(name, recipe) if recipe else None
        resolves, resolving = _resolving(name, recipe, attrs)
        rows.append({
            "study": study, "trials": len(done), "recipe": text,
            "split": _split_text(recipe),
            "seeds": ", ".join(map(str, seeds)) + (" (one per trial: no spread measured here)" if seeds else ""),
            "devices": ", ".join(sorted({t for t in (stored_text(r.get("device")) for r in done) if t})) or "?",
            "dataset": ", ".join(datasets) or name,
            "trained_px": stored_number(recipe.get("resolution")) if recipe else None,
            "fidelity": measured.sentence() if measured else (
                "never measured for this recipe: its ranking may not follow ImageNet's; measure it with "
                "`shufflesearch fidelity` (docs/fidelity.md)"),
            "resolves": resolves, "resolving_power": resolving,
        })  # fmt: skip
    frame = pd.DataFrame(rows, columns=PROVENANCE_COLUMNS)
    frame["trained_px"] = pd.to_numeric(frame.trained_px, errors="coerce").round().astype("Int64")
    return frame


def _resolving(dataset: str, recipe: dict | None, attrs: dict) -> tuple[bool | None, str]:
    """Whether the study's recipe resolves its MFLOPs budget (the window's top), in a sentence."""
    window = attrs.get("window_mflops")
    budget = stored_number(window[1]) if isinstance(window, list) and len(window) == 2 else None
    if recipe is None or budget is None or "mflops" not in attrs.get("budgeted", ["mflops"]):
        return None, "no MFLOPs budget recorded: resolving power not looked up"
    ranked = attrs.get("objectives")  # what the study stored that it ranks by ("top1" or "loss" first)
    return resolving_verdict(
        dataset, recipe, budget, "loss" if isinstance(ranked, list) and ranked[:1] == ["loss"] else "top1"
    )


def resolution_notes(provenance: pd.DataFrame) -> list[str]:
    """A note per study whose budget lies beyond its recipe's resolving power."""
    return [f"{r.study}: {r.resolving_power}." for r in provenance.itertuples() if r.resolves is False]


def _split_text(recipe: dict | None) -> str:
    """What the study's top-1 numbers are measured on, and whether that split also chose them."""
    split = split_of(recipe) if recipe else "unknown"
    if split == "validation":
        images = stored_number(recipe.get("validation_images"))
        held = f"{int(images)} " if images is not None else ""
        return (f"validation ({held}images held out of the training set; trials are chosen on them, "
                "the test split is left for the finished choice)")  # fmt: skip
    if split == "test":
        return "test (the same split chooses and reports: not held out)"
    return "not recorded"


def caveats(trials: pd.DataFrame, best: pd.DataFrame, records_by_study: dict[str, list[dict]]) -> list[str]:
    """What a reader must know before trusting the winners: each a plain sentence."""
    return _against_the_paper(best) + _near_chance(trials, records_by_study) + _only_queued(trials)


def _against_the_paper(best: pd.DataFrame) -> list[str]:
    lines = []
    trained = best[(best.kind == "paper model") & best.top1_pct.notna() & best.paper_imagenet_top1_pct.notna()]
    for (study, budget), grp in trained.groupby(["study", "budget"], sort=False):
        grp = grp.drop_duplicates("name")
        if len(grp) < 2 or grp.paper_imagenet_top1_pct.nunique() < 2:
            continue
        if not spearman(list(grp.top1_pct), list(grp.paper_imagenet_top1_pct)) < 0:  # nan (a tie) too
            continue
        ours = " > ".join(f"{_short(r.label)} ({r.top1_pct:.2f}%)" for r in grp.sort_values("top1_pct",
                          ascending=False).itertuples())  # fmt: skip
        paper = " > ".join(_short(r.label) for r in grp.sort_values("paper_imagenet_top1_pct", ascending=False)
                           .itertuples())  # fmt: skip
        spread = float(grp.top1_pct.max() - grp.top1_pct.min())
        lines.append(f"{study} {budget}: the proxy ranks the paper's models {ours}, against the paper's ImageNet "
                     f"order {paper}; they span {spread:.2f} points, so check the recipe's seed spread before "
                     "reading a winner from it.")  # fmt: skip
    return lines


def _short(label: str) -> str:
    return " ".join(str(label).split()[:2])


def _near_chance(trials: pd.DataFrame, records_by_study: dict[str, list[dict]]) -> list[str]:
    lines = []
    for study, records in records_by_study.items():
        levels = {chance_pct(r) for r in records} - {None}
        if len(levels) != 1:
            continue  # not recorded (older trials), or mixed: no one chance level
        chance = levels.pop()
        done = trials[(trials.study == study) & (trials.state == "complete") & trials.top1_pct.notna()]
        near = done[done.top1_pct <= chance + NEAR_CHANCE_PTS]
        if len(near):
            lines.append(f"{study}: {len(near)} of {len(done)} complete trials score within {NEAR_CHANCE_PTS:g} "
                         f"points of chance ({chance:g}%): they learnt next to nothing at this recipe, and their "
                         "order is noise.")  # fmt: skip
    return lines


def _only_queued(trials: pd.DataFrame) -> list[str]:
    lines = []
    for study, grp in trials[trials.state == "complete"].groupby("study", sort=False):
        if len(grp) and grp.preset.notna().all():
            lines.append(f"{study}: every complete trial is one of the {len(grp)} paper models queued first; no "
                         "sampled spec finished, so its best is the best of those, not a search result (run more "
                         "trials).")  # fmt: skip
    return lines

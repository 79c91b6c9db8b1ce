"""Accuracy commands: train (proxy accuracy), score (zero-cost scores), fidelity (how well the proxy ranks)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from ..accuracy.recipe import DEFAULT_FIDELITY, PRECISIONS, SEED_MAX, SPLITS, Fidelity, FidelityError
from ..spec import ShuffleNetSpec
from . import render
from .app import app
from .options import (
    AsJson,
    DataDir,
    Dataset,
    Device,
    ImageSize,
    Workers,
    given,
    one_of,
    output_file,
    seed_list,
    spec_options,
    with_default,
)

# The spec options a training run takes: resolution, classes, stem and input channels come from the data and recipe.
TRAINED_SPEC = ("preset", "groups", "scale", "repeats", "stage_channels", "stem_channels", "bottleneck", "shuffle")
# The recipe's fields as these commands spell them: an error names the option a person typed.
_OPTIONS = {"train_images": "--subset", "epochs": "--epochs", "batch_size": "--batch-size",
            "resolution": "--resolution", "time_budget_s": "--time-budget", "precision": "--precision",
            "scored_on": "--scored-on"}  # fmt: skip


# The recipe's options: left out (None), the recipe's own value applies, and --help shows that value.
_RECIPE = DEFAULT_FIDELITY
TrainingResolution = Annotated[
    int | None,
    typer.Option(help=with_default("Training px: images are resized to it and the network is built for it.",
                                   "the dataset's size" if _RECIPE.resolution is None else _RECIPE.resolution)),
]  # fmt: skip
Subset = Annotated[
    int | None, typer.Option(help=with_default("Training images (class-balanced subset).", _RECIPE.train_images))
]
Epochs = Annotated[float | None, typer.Option(help=with_default("Epochs over the subset.", _RECIPE.epochs))]
BatchSize = Annotated[int | None, typer.Option(help=with_default("Minibatch size.", _RECIPE.batch_size))]
Precision = Annotated[
    str | None, one_of(PRECISIONS, with_default("Autocast dtype (fp16 with a gradient scaler).", _RECIPE.precision))
]
ScoredOn = Annotated[
    str | None,
    one_of(SPLITS, with_default("Score on validation images held out of the training set (what a search chooses "
                                "by) or on the test split (to report a finished choice).", _RECIPE.scored_on)),
]  # fmt: skip
# ZERO_COST_SCORES of accuracy.zero_cost, which imports torch: tests/test_help_truth.py checks them.
ZERO_COST = ("synflow", "grad_norm", "naswot")


def _complete_scores(incomplete: str) -> list[str]:
    """--zero-cost a,b: the shell completes the name after the last comma."""
    done, _, last = incomplete.rpartition(",")
    return [f"{done},{s}" if done else s for s in ZERO_COST if s.startswith(last) and s not in done.split(",")]


def recipe_from_options(**options) -> Fidelity:
    """The default recipe with the options given; a bad one is refused naming its option (exit 2)."""
    try:
        return DEFAULT_FIDELITY.replace(**given(**options))
    except FidelityError as exc:
        match = re.fullmatch(r"(\w+)=(.*?) (must .*|is .*); e\.g\. \1=(.*)", str(exc))
        if match is None or match[1] not in _OPTIONS:
            raise
        option = _OPTIONS[match[1]]
        raise FidelityError(f"{option} {match[2]} {match[3]}; e.g. {option} {match[4]}") from None


@app.command()
@spec_options(*TRAINED_SPEC)
def train(
    spec: ShuffleNetSpec,
    resolution: TrainingResolution = None,
    dataset: Dataset = "fashion-mnist",
    data_dir: DataDir = None,
    image_size: ImageSize = None,
    subset: Subset = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    time_budget: Annotated[
        float | None,
        typer.Option(help=with_default("Stop after this many seconds (anneals by time).", _RECIPE.time_budget_s)),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed for init, subset and order (same seed: same result).", min=0, max=SEED_MAX)
    ] = 0,
    threads: Annotated[int, typer.Option(help="Torch threads (1 is fastest on a shared CPU).", min=1, max=1024)] = 1,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Train even if this exact run is cached.")] = False,
    device: Device = "auto",
    precision: Precision = None,
    scored_on: ScoredOn = None,
    save: Annotated[
        Path | None,
        typer.Option(help="Keep the trained weights in this safetensors checkpoint (trains even if cached)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Proxy accuracy: short, seeded training on a real dataset (the default recipe: docs/fidelity.md).

    Example: shufflesearch train --groups 3 --scale 0.5 --dataset fashion-mnist --epochs 2 --subset 10000

    Example: shufflesearch train --groups 3 --scale 0.5 --epochs 2 --subset 10000 --save reports/model.safetensors
    """
    from ..accuracy.cache import ResultCache
    from ..accuracy.datasets import load_dataset
    from ..accuracy.devices import check_precision, resolve_device
    from ..accuracy.trainer import train_proxy
    from ..atomic import check_writable

    where = resolve_device(device)  # a missing GPU or an unsupported precision: one line, before the data loads
    fidelity = recipe_from_options(train_images=subset, epochs=epochs, batch_size=batch_size, resolution=resolution,
                       time_budget_s=time_budget, precision=precision, scored_on=scored_on)  # fmt: skip
    check_precision(fidelity.precision, where)
    if save is not None:
        check_writable(output_file(save).parent)  # fail now, not after the training
    data = load_dataset(dataset, data_dir, image_size)
    cache = None if no_cache else ResultCache()
    run = {"seed": seed, "cache": cache, "threads": threads, "device": where, "keep_weights": save is not None}
    if as_json:
        result = train_proxy(spec, data, fidelity, **run)
        out = result.to_dict()
        if save is not None and result.status == "ok":
            out["checkpoint"] = str(_save(save, result))
        render.print_json(out)
        return
    with render.training_bar("train", fidelity.epochs) as progress:
        result = train_proxy(spec, data, fidelity, progress=progress, **run)
    console = render.console()
    trained = ShuffleNetSpec.from_dict(result.spec).label
    if result.status != "ok":
        console.print(f"{trained}: training {render.esc(result.status)} after {result.images_seen:,} images; "
                      "try a lower learning rate or more warm-up")  # fmt: skip
        raise SystemExit(1)
    source = (
        "cached result"
        if result.cached
        else f"{result.seconds:.0f} s on {result.device}, {result.images_seen:,} images seen"
    )
    scored = (f"{result.scored_images or 'the'} validation images held out of the training set"
              if result.scored_on == "validation" else "the held-out test split")  # fmt: skip
    console.print(f"{trained} on {render.esc(dataset)}: proxy top-1 [bold]{render.pct(result.top1)}[/bold] on "
                  f"{scored} ({source}); not an ImageNet accuracy")  # fmt: skip
    if save is not None:
        console.print(f"weights, spec, recipe and metrics saved to {render.esc(str(_save(save, result)))}")
    rows = [{"epoch": round(p["epoch"], 2), "images seen": p["images_seen"], "train loss": round(p["train_loss"], 4),
             "top-1 (curve subset) %": round(100 * p["top1"], 2) if p.get("top1") is not None else "-"}
            for p in result.curve]  # fmt: skip
    if rows:
        console.print(render.rich_table(rows, "Learning curve"))


def _save(path: Path, result) -> Path:
    """`train --save`: the run's weights with their spec, recipe, dataset fingerprint and metrics."""
    from ..checkpoint import save_result

    return save_result(path, result)


@app.command()
@spec_options(*TRAINED_SPEC)
def score(
    spec: ShuffleNetSpec,
    resolution: TrainingResolution = None,
    dataset: Dataset = "fashion-mnist",
    data_dir: DataDir = None,
    image_size: ImageSize = None,
    zero_cost: Annotated[
        str, typer.Option(help=f"Comma-separated scores: {', '.join(ZERO_COST)}.", autocompletion=_complete_scores)
    ] = ",".join(ZERO_COST),
    batch_size: Annotated[int, typer.Option(help="Images in the one minibatch scored.", min=2)] = 64,
    batch: Annotated[int | None, typer.Option("--batch", hidden=True, min=2)] = None,  # the older --batch-size
    seed: Annotated[int, typer.Option(help="Seed for init and the minibatch.", min=0, max=SEED_MAX)] = 0,
    device: Device = "auto",
    as_json: AsJson = False,
) -> None:
    """Training-free scores on one minibatch (a pre-filter, not an accuracy).

    Example: shufflesearch score --groups 3 --scale 0.5 --zero-cost synflow,grad_norm,naswot
    """
    from ..accuracy.datasets import load_dataset
    from ..accuracy.devices import resolve_device
    from ..accuracy.zero_cost import score_on_dataset

    where = resolve_device(device)
    batch = batch_size if batch is None else batch
    fidelity = recipe_from_options(resolution=resolution or None)
    data = load_dataset(dataset, data_dir, image_size)
    if batch > len(data.train_labels):
        raise typer.BadParameter(f"{batch} is more than the {len(data.train_labels)} training images of {dataset}; "
                                 f"e.g. --batch-size {min(64, len(data.train_labels))}", param_hint="--batch-size")  # fmt: skip
    trained, result = score_on_dataset(spec, data, fidelity, batch, tuple(zero_cost.split(",")), seed, where)
    if as_json:
        render.print_json({"spec": trained.to_dict(), **result.to_dict()})
        return
    rows = [{"score": k, "value": v, "seconds": round(result.seconds[k], 3)} for k, v in result.scores.items()]
    render.console().print(render.rich_table(rows, f"Zero-cost scores of {trained.label} on {batch} {dataset} images"))


@app.command()
def fidelity(
    dataset: Dataset = "fashion-mnist",
    data_dir: DataDir = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; results are averaged.")] = "0,1",
    workers: Workers = 2,
    subset: Subset = None,
    epochs: Epochs = None,
    resolution: TrainingResolution = None,
    scored_on: ScoredOn = None,
    zero_cost: Annotated[
        bool, typer.Option("--zero-cost", help="Also rank each zero-cost score against the paper (and the proxy).")
    ] = False,
    device: Device = "auto",
    as_json: AsJson = False,
) -> None:
    """How well proxy accuracy ranks the paper's 15 Table 2 models, beside #params and MFLOPs.

    Example: shufflesearch fidelity --seeds 0,1 --workers 2 --zero-cost
    """
    from ..accuracy.cache import ResultCache
    from ..accuracy.datasets import load_dataset
    from ..accuracy.devices import worker_devices
    from ..accuracy.fidelity import rankers_vs_paper, run_fidelity, table2_zero_cost_scores, zero_cost_ranking

    worker_devices(device, workers)  # a missing GPU: one line, before the data loads
    fid = recipe_from_options(train_images=subset, epochs=epochs, resolution=resolution, scored_on=scored_on)
    data = load_dataset(dataset, data_dir)
    seed_tuple = seed_list(seeds, SEED_MAX)
    progress = None if as_json else (lambda p: render.say(f"  {p}", err=True))
    report = run_fidelity(data, fid, seeds=seed_tuple, progress=progress, cache=ResultCache(), workers=workers,
                          device=device)  # fmt: skip
    result = report.to_dict()
    if zero_cost:
        scores = table2_zero_cost_scores(data, fid)
        result["rankers"] = rankers_vs_paper(report.rows, scores)
        result["zero_cost_spearman_vs_proxy"] = zero_cost_ranking(report, scores)
    if as_json:
        render.print_json(result)
        return
    console = render.console()
    console.print(f"Spearman vs the paper's ImageNet accuracy (15 models): overall [bold]{report.spearman_overall:.3f}"
                  f"[/bold]; by scale {report.spearman_by_scale}; g>1 beats g=1: {report.direction_ok_by_scale}; "
                  f"seed spread {100 * report.seed_spread:.2f} points; {report.minutes:.1f} training-minutes")  # fmt: skip
    console.print(render.rich_table(_ranker_rows(result["rankers"]), "Each ranker against the paper's ImageNet top-1 "
                                    "on the same 15 models (95% bootstrap intervals)"))  # fmt: skip
    if zero_cost:
        console.print(
            f"zero-cost scores and baselines, Spearman vs proxy top-1: {result['zero_cost_spearman_vs_proxy']}"
        )


def _ranker_rows(rankers: dict[str, dict]) -> list[dict]:
    """One row per ranker: its Spearman and Kendall with intervals, then its Spearman within each scale."""

    def interval(figures: dict, name: str) -> str:
        return "[{:.2f},{:.2f}]".format(*figures[f"{name}_95"])  # one token: a narrow table never splits it

    return [
        {"ranker": name, "Spearman": f"{f['spearman']:.3f}", "Spearman 95%": interval(f, "spearman"),
         "Kendall": f"{f['kendall']:.3f}", "Kendall 95%": interval(f, "kendall"),
         **{f"within x{scale}": f"{g['spearman']:.2f}" for scale, g in f["by_group"].items()}}
        for name, f in rankers.items()
    ]  # fmt: skip

"""The resolution command: what a recipe can tell apart where counting parameters cannot, and up to which budget."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..accuracy.recipe import SEED_MAX
from . import render
from .accuracy import Epochs, ScoredOn, Subset, TrainingResolution, recipe_from_options
from .app import app
from .options import AsJson, DataDir, Dataset, Device, Workers, one_of, seed_list

# accuracy.resolution.PARTS (that module imports torch): tests/test_help_truth.py checks the copy.
PARTS = ("both", "shuffle", "ladder")


@app.command()
def resolution(
    dataset: Dataset = "fashion-mnist",
    data_dir: DataDir = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds: each network trains once per seed.")] = "0,1,2",
    workers: Workers = 2,
    part: Annotated[str, one_of(PARTS, "shuffle: the no-shuffle twins; ladder: neighbouring widths; both.")] = "both",
    study: Annotated[
        Path | None,
        typer.Option(
            help="Measure this study file's recipe, scaled by budget as the study scales it "
            "([accuracy.fidelity_by_budget]), instead of the default recipe with the options below."
        ),
    ] = None,
    subset: Subset = None,
    epochs: Epochs = None,
    resolution: TrainingResolution = None,
    scored_on: ScoredOn = None,
    device: Device = "auto",
    as_json: AsJson = False,
) -> None:
    """Where the proxy earns its cost: channel shuffle on or off at equal widths (equal #params), and how far
    apart networks one width step apart score against one run's seed noise, budget by budget.

    Example: shufflesearch resolution --seeds 0,1,2 --workers 2
    """
    from ..accuracy.cache import ResultCache
    from ..accuracy.datasets import load_dataset
    from ..accuracy.devices import worker_devices
    from ..accuracy.resolution import measure_resolution

    worker_devices(device, workers)  # a missing GPU: one line, before the data loads
    seed_tuple = seed_list(seeds, SEED_MAX)
    if len(seed_tuple) < 2:
        raise typer.BadParameter("a seed spread needs at least two seeds, e.g. --seeds 0,1,2", param_hint="--seeds")
    if study is not None:
        from ..search.study_file import load_study

        config = load_study(study)
        if any(v is not None for v in (subset, epochs, resolution, scored_on)):
            raise typer.BadParameter("the study file gives the recipe: leave out --subset, --epochs, --resolution "
                                     "and --scored-on, or --study", param_hint="--study")  # fmt: skip
        dataset, data_dir, base, scaled = config.dataset, config.data_dir, config.fidelity, config.fidelity_for
    else:
        base = recipe_from_options(train_images=subset, epochs=epochs, resolution=resolution, scored_on=scored_on)
        scaled = None
    data = load_dataset(dataset, data_dir)
    progress = None if as_json else (lambda p: render.say(f"  {p.run}/{p.runs} {p.label} seed {p.seed}", err=True))
    result = measure_resolution(data, base, seed_tuple, part, scaled, progress=progress, cache=ResultCache(),
                                workers=workers, device=device)  # fmt: skip
    if as_json:
        render.print_json(result)
        return
    console = render.console()
    if "shuffle" in result:
        _print_ablation(console, result["shuffle"])
    if "ladder" in result:
        _print_ladder(console, result["ladder"])


def _print_ablation(console, ablation: dict) -> None:
    rows = [{"network": f"{r['scale']:g}x g{r['groups']}", "params": r["params"],
             "margin by seed (pts)": " ".join(f"{m:+.2f}" for m in r["margin_pts_by_seed"]),
             "mean margin": f"{r['margin_pts']:+.2f}", "seed spread": f"{r['seed_spread_pts']:.2f}",
             "margin / spread": f"{r['margin_over_spread']:.1f}",
             "below on every seed": "yes" if r["below_on_every_seed"] else "NO",
             "by loss": "yes" if r["loss_below_on_every_seed"] else "NO"} for r in ablation["rows"]]  # fmt: skip
    console.print(render.rich_table(rows, "Channel shuffle on minus off, same widths and #params (top-1 points; "
                                          "the paper: off loses at g >= 3)"))  # fmt: skip
    verdict = "passes" if ablation["passes"] else "FAILS"
    console.print(render.line(f"The recipe {verdict} the paper's claim on top-1 (every twin below on every seed); "
                              f"by loss it {'passes' if ablation['passes_by_loss'] else 'FAILS'}. "
                              f"{ablation['cpu_minutes']:.1f} CPU-minutes ({ablation['cached_runs']} runs cached)."),
                  markup=False, highlight=False)  # fmt: skip


def _print_ladder(console, ladder: dict) -> None:
    rows = [{"step": f"{r['from_scale']:g}x -> {r['to_scale']:g}x g{ladder['groups']}",
             "MFLOPs": f"{r['from_mflops']:.0f} -> {r['to_mflops']:.0f}", "gap (pts)": f"{r['gap_pts']:+.2f}",
             "seed spread": f"{r['seed_spread_pts']:.2f}", "gap / spread": f"{r['gap_over_spread']:.1f}",
             "one run orders them": f"{100 * r['chance_ordered']:.0f}%",
             "by loss": f"{100 * r['loss_chance_ordered']:.0f}%",
             "recipe": ", ".join(f"{k}={v}" for k, v in r["recipe_changes"].items()) or "base"}
            for r in ladder["rows"]]  # fmt: skip
    console.print(render.rich_table(rows, "Resolving power by budget: neighbouring widths, one run's chance to "
                                          "order them right (Phi(gap / (spread * sqrt 2)))"))  # fmt: skip
    trusted = ladder["trusted_up_to_mflops"]
    console.print(render.line(
        (f"One run resolves every width step up to {trusted:.0f} MFLOPs (>= 90% each); past it a search chooses "
         "inside the noise." if trusted is not None else "Not even the first width step is resolved (>= 90%).")
        + f" {ladder['cpu_minutes']:.1f} CPU-minutes ({ladder['cached_runs']} runs cached)."),
        markup=False, highlight=False)  # fmt: skip

"""Commands on trained weights: evaluate (top-1/top-5 of a checkpoint, ours or official)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..accuracy.recipe import DATASETS
from . import render
from .app import app
from .options import AsJson, Device, one_of, preset_names, suggesting


@app.command()
def evaluate(
    weights: Annotated[
        Path,
        typer.Option(help="Our .safetensors checkpoint, or an official ShuffleNet-Series .pth.tar (with --preset)."),
    ],
    preset: Annotated[
        str | None, suggesting(preset_names, "The preset an official checkpoint is for.", metavar="<name>")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="A validation folder, one sub-folder per class (sorted = class order), e.g. imagenet/val; "
            "with --dataset, that dataset's files."
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        one_of(
            DATASETS, "Evaluate on this dataset's test split instead (default: the one the checkpoint was trained on)."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate this many images only.", min=1)] = None,
    device: Device = "auto",
    as_json: AsJson = False,
) -> None:
    """Top-1 and top-5 of a checkpoint, fed as it was trained (official: shorter side 256, crop 224, BGR, 0-255).

    Example: shufflesearch evaluate --weights reports/model.safetensors --dataset fashion-mnist
    """
    from ..accuracy.evaluate import evaluate_checkpoint
    from ..checkpoint import load_checkpoint

    ckpt = load_checkpoint(weights, preset)
    folder = data_dir if dataset is None else None
    scores = evaluate_checkpoint(ckpt, folder=folder, dataset=dataset, data_dir=data_dir, device=device, limit=limit)
    out = {"weights": str(weights), "kind": ckpt.kind, "spec": ckpt.spec.to_dict(),
           "preprocessing": ckpt.preprocessing.to_dict(), **scores}  # fmt: skip
    if as_json:
        render.print_json(out)
        return
    note = "" if scores.get("same_dataset", True) else " (not the data it was trained on)"
    render.console().print(f"{ckpt.spec.label} ({ckpt.kind} weights) on {render.esc(scores['on'])}{note}: top-1 "
                           f"[bold]{render.pct(scores['top1'])}[/bold], top-5 {render.pct(scores['top5'])} "
                           f"({scores['images']:,} images, {scores['device']})")  # fmt: skip

"""The finished folder's README.md: what is in it, how it was made, how to use it. Text only."""

from __future__ import annotations

from typing import Any


def folder_readme(result, metrics: dict[str, Any]) -> str:
    """Markdown for a `FinishResult` and its metrics.json contents."""
    recipe = result.recipe
    latency = result.latency
    if latency is None:
        latency_line = "not measured (finished with no latency target)"
    else:
        ms = "-" if latency["ms"] is None else f"{latency['ms']:.3f} ms"
        latency_line = f"{ms} at batch 1, {latency['kind']} on {latency['target']}"
    mean = ", ".join(f"{m:.2f}" for m in metrics["input_mean"])
    std = ", ".join(f"{s:.2f}" for s in metrics["input_std"])
    res = result.spec["resolution"]
    channels = result.spec["in_channels"]
    budget = "".join(f" --{o} {v:g}" for o, v in (("budget", result.budget), ("budget-ms", result.budget_ms))
                     if v is not None)  # fmt: skip
    searched = result.search_latency
    searched_line = "" if searched is None else (
        f"| latency the search used | {searched['ms']:.3f} ms ({searched['kind']}, the study's predictor) |\n")  # fmt: skip
    proxy = "-" if result.proxy_top1 is None else f"{100 * result.proxy_top1:.2f}% (on the {result.proxy_split} split)"
    return f"""# {result.label}: trial {result.trial} of {result.study}, finished

A ShuffleNet v1 network found by a shufflesearch study ({metrics["study_file"]}) and trained
to completion on the whole training set of {metrics["dataset"]}.

| | |
|---|---|
| top-1 on the test split | {100 * result.top1:.2f}% ({result.images} images) |
| top-5 on the test split | {100 * result.top5:.2f}% |
| the search's proxy top-1 | {proxy} |
| latency | {latency_line} |
{searched_line}| ONNX vs PyTorch | same prediction on {result.onnx["agree"]} of {result.onnx["images"]} test images (max logit difference {result.onnx["max_abs_diff"]:.2g}) |
| trained on | {result.device}, {result.train_seconds:.0f} s |

## Files

- `model.safetensors`: the weights (safetensors: nothing is unpickled) with the spec, the
  recipe, the dataset fingerprint and these metrics in its header. Load it with
  `shufflesearch.checkpoint.load_checkpoint` and `trained_model`.
- `model.onnx`: the same network for ONNX Runtime; input `(N, {channels}, {res}, {res})` float pixels
  in 0-255 (normalisation with mean [{mean}] and std [{std}] is inside the graph), output logits.
- `metrics.json`: everything above, machine-readable, with the recipe and the environment.
- `finish.json`, `training-state.pt`: what was finished and the last training state; needed only
  to resume an interrupted run, safe to delete.

## How it was made

Spec: `{result.label}` ({result.spec["groups"]} groups, stage channels {result.spec["stage_channels"]}).
Recipe: {recipe["epochs"]:g} epochs over {recipe["train_images"]} images at {res} px, batch {recipe["batch_size"]},
lr {recipe["lr"]:g} ({recipe["schedule"]}), augmentation {recipe["augment"]}, label smoothing
{recipe["label_smoothing"]:g}, precision {recipe.get("precision", "fp32")}, seed {metrics["seed"]}.

Again: `shufflesearch finish {metrics["study_file"]}{budget} --trial {result.trial} --epochs {recipe["epochs"]:g} --out {result.out}`
(the same command resumes an interrupted run).
"""


__all__ = ["folder_readme"]

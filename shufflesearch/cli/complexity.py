"""Commands that count and export one variant: analyze, models, table, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..complexity import count_complexity
from ..presets import list_presets
from ..spec import GROUP_CHOICES, ShuffleNetSpec
from . import render
from .app import app
from .options import (
    SPEC_OPTIONS,
    AsJson,
    Bottleneck,
    Classes,
    InChannels,
    Repeats,
    Resolution,
    Shuffle,
    Stem,
    build_spec,
    int_list,
    output_file,
    spec_options,
    with_default,
)

ONNX_OPSET = 17  # export.OPSET, whose module imports torch: tests/test_help_truth.py checks they agree


@app.command()
@spec_options()
def analyze(
    spec: ShuffleNetSpec,
    layers: Annotated[bool, typer.Option("--layers", help="Also list every conv/FC layer.")] = False,
    fvcore: Annotated[
        bool, typer.Option("--fvcore", help="Cross-check the MACs with fvcore's tracer (loads torch).")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """MFLOPs (multiply-adds, as in the paper), parameters and memory of one variant, per stage.

    Example: shufflesearch analyze --groups 3 --scale 1.0 --repeats 4,6,4 --resolution 160 --json
    """
    cost = count_complexity(spec)
    result = {"spec": spec.to_dict(), "label": spec.label, **cost.to_dict()}
    if layers:
        result["layers"] = [la._asdict() for la in cost.layers]
    if fvcore:
        from ..complexity.fvcore_check import fvcore_count

        check = fvcore_count(spec)
        result["fvcore"] = {"macs": check.macs, "agrees": check.macs == cost.macs, "seconds": round(check.seconds, 3)}
    if as_json:
        render.print_json(result)
        return
    console = render.console()
    console.print(f"[bold]ShuffleNet v1 {spec.label}[/bold]  stem {spec.stem_channels}, stages "
                  f"{'/'.join(map(str, spec.stage_channels))}, {spec.num_classes} classes")  # fmt: skip
    console.print(f"  MFLOPs (multiply-adds of convs + FC, as in the paper): [bold]{cost.mflops:,.2f}[/bold]")
    console.print(f"  parameters: {cost.params:,} ({cost.params / 1e6:.3f} M), model {cost.model_mb:.2f} MB fp32")
    console.print(f"  activations at batch 1: {cost.activation_values:,} values written, "
                  f"peak {cost.peak_activation_bytes / 1e6:.2f} MB live (fp32)")  # fmt: skip
    other = ", ".join(f"{k.replace('_', ' ')} {v / 1e6:.2f}M" for k, v in cost.other_ops.items())
    console.print(f"  not in MFLOPs (elementwise ops): {other}")
    if fvcore:
        verdict = "agrees" if result["fvcore"]["agrees"] else "DISAGREES"
        console.print(f"  fvcore cross-check: {result['fvcore']['macs'] / 1e6:,.2f} MFLOPs, {verdict}")
    rows = [
        {"stage": s.name, "output": f"{s.out_channels}x{s.out_size}x{s.out_size}", "MFLOPs": s.macs / 1e6,
         "% MFLOPs": 100 * s.macs / cost.macs, "params": s.params}
        for s in cost.stages
    ]  # fmt: skip
    console.print(render.rich_table(rows, "Per stage"))
    if layers:
        console.print(render.rich_table(result["layers"], "Per layer"))


@app.command()
def models(as_json: AsJson = False) -> None:
    """The named presets with their MFLOPs and parameters.

    Example: shufflesearch models --json
    """
    rows = []
    for name, spec in sorted(list_presets().items(), key=lambda kv: (kv[1].scale, kv[1].groups)):
        cost = count_complexity(spec)
        rows.append({"name": name, "groups": spec.groups, "scale": spec.scale, "stem_channels": spec.stem_channels,
                     "stage_channels": "/".join(map(str, spec.stage_channels)), "mflops": round(cost.mflops, 2),
                     "params": cost.params})  # fmt: skip
    if as_json:
        render.print_json(rows)
    else:
        render.console().print(render.rich_table(rows, "Presets (MFLOPs = multiply-adds at 224 px, as in the paper)"))


@app.command()
def table(
    groups: Annotated[
        str, typer.Option(help=f"Comma-separated group counts, of {', '.join(map(str, GROUP_CHOICES))}.")
    ] = ",".join(map(str, GROUP_CHOICES)),
    scales: Annotated[str, typer.Option(help="Comma-separated width multipliers.")] = "0.25,0.5,1.0",
    repeats: Repeats = None,
    resolution: Resolution = None,
    classes: Classes = None,
    bottleneck: Bottleneck = None,
    stem: Stem = None,
    in_channels: InChannels = None,
    shuffle: Shuffle = None,
    out: Annotated[Path | None, typer.Option(help="Write the table to a .csv or .md file.")] = None,
    as_json: AsJson = False,
) -> None:
    """Sweep groups x scales into a complexity table (paper Table 1 style).

    Example: shufflesearch table --groups 1,2,3,4,8 --scales 0.25,0.5,1.0 --out reports/complexity.csv
    """
    from ..complexity.sweep import complexity_rows
    from ..report.tables import render_table

    if out is not None:
        output_file(out)
    base = build_spec(repeats=repeats, resolution=resolution, classes=classes, bottleneck=bottleneck, stem=stem,
                      in_channels=in_channels, shuffle=shuffle)  # fmt: skip
    group_list = int_list(groups, "--groups")
    try:
        scale_list = tuple(float(s) for s in scales.split(","))
    except ValueError:
        raise typer.BadParameter(f"--scales={scales!r} must be comma-separated numbers, e.g. 0.5,1.0") from None
    rows = complexity_rows(group_list, scale_list, base)
    if out is not None:
        from ..atomic import write_atomically

        write_atomically(out, render_table(rows, out))
    if as_json:
        render.print_json(rows)
        return
    console = render.console()
    console.print(
        render.rich_table(rows, f"Complexity ({base.resolution} px; MFLOPs = multiply-adds, as in the paper)")
    )
    if out is not None:
        console.print(f"wrote {render.esc(out)}")


@app.command()
@spec_options()
def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Where to write the ONNX model.")],
    spec: ShuffleNetSpec,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Trained weights: our .safetensors (spec from the file) or an official ShuffleNet-Series "
            ".pth.tar (name its --preset)."
        ),
    ] = None,
    study: Annotated[
        Path | None, typer.Option(help="A study file: export a trial's kept weights (with --trial).")
    ] = None,
    trial: Annotated[int | None, typer.Option(help="Trial number in --study, as reports list it.", min=0)] = None,
    budget: Annotated[
        float | None, typer.Option(help="MFLOPs budget window of --trial, if the study has several.")
    ] = None,
    budget_ms: Annotated[
        float | None, typer.Option(help="Latency budget window (ms) of --trial, if the study has several.")
    ] = None,
    storage: Annotated[str | None, typer.Option(help="Storage URL of --study, e.g. postgresql://user@db/nas.")] = None,
    batch: Annotated[int, typer.Option(help="Fixed batch size of the graph.", min=1, max=4096)] = 1,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="A dynamic batch axis instead.")] = False,
    opset: Annotated[int | None, typer.Option(help=with_default("ONNX opset, 7-20.", ONNX_OPSET))] = None,
    as_json: AsJson = False,
) -> None:
    """Export a variant to ONNX, checked against PyTorch in ONNX Runtime (max abs diff <= 1e-4 x the logits' scale).

    With --weights (or --study/--trial) the trained network is exported: the spec comes from our
    checkpoint (--resolution may trace another size), or from --preset for an official one, and
    the graph takes float pixels in 0-255 (normalisation baked in). Without, seeded random weights.

    Official weights: --preset shufflenet_v1_x1_0_g3 --weights official.pth.tar (the official logits).

    Example: shufflesearch export --groups 3 --scale 1.0 --out reports/model.onnx
    """
    from ..export import OPSET, export_onnx, export_trained

    output_file(out)
    described = [n for n in SPEC_OPTIONS if n not in ("preset", "resolution") and _given(ctx, n)]
    if dynamic_batch and _given(ctx, "batch"):
        raise typer.BadParameter("--batch N or --dynamic-batch, not both")
    if weights is not None and study is not None:
        raise typer.BadParameter("--weights FILE or --study FILE --trial N, not both")
    if study is None and (trial is not None or budget is not None or budget_ms is not None):
        raise typer.BadParameter("--trial, --budget and --budget-ms name a trial of --study FILE")
    if (weights is not None or study is not None) and described:
        raise typer.BadParameter(f"--{described[0].replace('_', '-')}: with trained weights the network comes "
                                 "from the checkpoint (an official one: --preset); drop it")  # fmt: skip
    size, opset = None if dynamic_batch else batch, OPSET if opset is None else opset
    if study is not None:
        weights = _trial_weights(study, trial, budget, budget_ms, storage)
    if weights is not None:
        result = export_trained(out, weights, preset=ctx.params["preset"], batch=size, opset=opset,
                                resolution=ctx.params["resolution"])  # fmt: skip
    else:
        result = export_onnx(spec, out, batch=size, opset=opset)
    data = {"path": str(result.path), "bytes": result.bytes, "max_abs_diff": result.max_abs_diff,
            "opset": result.opset, "batch": "dynamic" if result.batch is None else result.batch,
            "spec": result.spec.to_dict(), "weights": str(result.weights) if result.weights else None,
            "input": result.input}  # fmt: skip
    if as_json:
        render.print_json(data)
        return
    what = "trained weights from " + render.esc(str(result.weights)) if result.weights else "seeded random weights"
    render.console().print(f"wrote {render.esc(result.path)} ({result.bytes / 1e6:.2f} MB, opset {result.opset}, "
                           f"batch {data['batch']}; {what}); ONNX Runtime matches PyTorch (max abs diff "
                           f"{result.max_abs_diff:.1e}); input: {data['input']}")  # fmt: skip


def _given(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)  # by name: typer may vendor its own click, with its own enum
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _trial_weights(study: Path, trial: int | None, budget: float | None, budget_ms: float | None,
                   storage: str | None) -> Path:  # fmt: skip
    if trial is None:
        raise typer.BadParameter("--study needs --trial N: the trial whose kept weights to export")
    from ..search.artifacts import trial_checkpoint
    from ..search.storage import check_storage_url
    from ..search.study_file import load_study
    from ..search.workers import storage_url_for

    config = load_study(study)
    return trial_checkpoint(config, check_storage_url(storage_url_for(config, storage)), trial, budget, budget_ms)

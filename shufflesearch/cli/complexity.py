"""Commands that count and export one variant: analyze, models, table, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..complexity import count_complexity
from ..presets import list_presets
from ..spec import ShuffleNetSpec
from . import render
from .app import app
from .options import (
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
)


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
    groups: Annotated[str, typer.Option(help="Comma-separated group counts.")] = "1,2,3,4,8",
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
    out: Annotated[Path, typer.Option(help="Where to write the ONNX model.")],
    spec: ShuffleNetSpec,
    as_json: AsJson = False,
) -> None:
    """Export a variant to ONNX, checked against PyTorch in ONNX Runtime (max abs diff <= 1e-4).

    Example: shufflesearch export --groups 3 --scale 1.0 --out reports/model.onnx
    """
    from ..export import export_onnx

    result = export_onnx(spec, output_file(out))
    data = {"path": str(result.path), "bytes": result.bytes, "max_abs_diff": result.max_abs_diff,
            "opset": result.opset, "spec": spec.to_dict()}  # fmt: skip
    if as_json:
        render.print_json(data)
    else:
        render.console().print(f"wrote {render.esc(result.path)} ({result.bytes / 1e6:.2f} MB, opset {result.opset}); "
                               f"ONNX Runtime matches PyTorch (max abs diff {result.max_abs_diff:.1e})")  # fmt: skip

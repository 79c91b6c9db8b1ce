"""The `shufflesearch` command line: parse, call one library function, render.

Heavy imports (torch, onnx, optuna, matplotlib) stay inside the commands that need them,
so `shufflesearch analyze` answers without loading torch. Errors become one line on
stderr in one place (`main`): our ValueErrors are usage errors (exit 2), our other
errors and OS errors exit 1. SHUFFLESEARCH_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from .complexity import count_complexity
from .presets import get_preset, list_presets
from .spec import ShuffleNetSpec

app = typer.Typer(
    name="shufflesearch",
    help=(
        "ShuffleNet v1 architecture search and complexity analysis.\n\n"
        "Example: shufflesearch analyze --groups 8 --scale 0.5"
    ),
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


# -- shared options -------------------------------------------------------------------
def _int_list(text: str | None, name: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{name}={text!r} must be comma-separated integers, e.g. 4,8,4") from None


Preset = Annotated[
    str | None, typer.Option(help="Named variant (see `shufflesearch models`); other options override it.")
]
Groups = Annotated[int | None, typer.Option(help="Groups of the pointwise convs: 1, 2, 3, 4 or 8. [default: 3]")]
Scale = Annotated[float | None, typer.Option(help="Width multiplier s ('ShuffleNet s x'). [default: 1.0]")]
Repeats = Annotated[str | None, typer.Option(help="Units per stage (Stage2,3,4). [default: 4,8,4]")]
Resolution = Annotated[int | None, typer.Option(help="Input height = width in px. [default: 224]")]
Classes = Annotated[int | None, typer.Option("--classes", help="Number of classes. [default: 1000]")]
StageChannels = Annotated[str | None, typer.Option(help="Explicit Stage2,3,4 widths instead of the width rule.")]
StemChannels = Annotated[int | None, typer.Option(help="Explicit stem width instead of the width rule.")]
Bottleneck = Annotated[float | None, typer.Option(help="Bottleneck width / output width. [default: 0.25]")]
Stem = Annotated[str | None, typer.Option(help="'imagenet' (stride-2 conv + max pool) or 'small' (28-64 px images).")]
InChannels = Annotated[int | None, typer.Option(help="Input channels (1 for grayscale). [default: 3]")]
Shuffle = Annotated[bool | None, typer.Option("--shuffle/--no-shuffle", help="Channel shuffle (the paper's ablation).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def build_spec(
    preset: str | None = None,
    groups: int | None = None,
    scale: float | None = None,
    repeats: str | None = None,
    resolution: int | None = None,
    classes: int | None = None,
    stage_channels: str | None = None,
    stem_channels: int | None = None,
    bottleneck: float | None = None,
    stem: str | None = None,
    in_channels: int | None = None,
    shuffle: bool | None = None,
) -> ShuffleNetSpec:
    """The spec the shared options describe: a preset (or the default) with overrides."""
    base = get_preset(preset) if preset else ShuffleNetSpec()
    changes = {
        "groups": groups,
        "scale": scale,
        "repeats": _int_list(repeats, "--repeats"),
        "resolution": resolution,
        "num_classes": classes,
        "stage_channels": _int_list(stage_channels, "--stage-channels"),
        "stem_channels": stem_channels,
        "bottleneck_ratio": bottleneck,
        "stem": stem,
        "in_channels": in_channels,
        "shuffle": shuffle,
    }
    return base.replace(**{k: v for k, v in changes.items() if v is not None})


# -- rendering ------------------------------------------------------------------------
def _console():
    from rich.console import Console

    # Not a terminal (a pipe, a file, CI): wide enough that tables are not truncated.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _rich_table(rows: list[dict], title: str | None = None, columns: list[str] | None = None):
    from rich.table import Table

    columns = columns or (list(rows[0]) if rows else [])
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="right" if rows and isinstance(rows[0][col], (int, float)) else "left")
    for row in rows:
        table.add_row(*(_fmt(row[c]) for c in columns))
    return table


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


# -- commands -------------------------------------------------------------------------
@app.command()
def analyze(
    preset: Preset = None,
    groups: Groups = None,
    scale: Scale = None,
    repeats: Repeats = None,
    resolution: Resolution = None,
    classes: Classes = None,
    stage_channels: StageChannels = None,
    stem_channels: StemChannels = None,
    bottleneck: Bottleneck = None,
    stem: Stem = None,
    in_channels: InChannels = None,
    shuffle: Shuffle = None,
    layers: Annotated[bool, typer.Option("--layers", help="Also list every conv/FC layer.")] = False,
    fvcore: Annotated[
        bool, typer.Option("--fvcore", help="Cross-check the MACs with fvcore's tracer (loads torch).")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """MFLOPs (multiply-adds, as in the paper), parameters and memory of one variant, per stage.

    Example: shufflesearch analyze --groups 3 --scale 1.0 --repeats 4,6,4 --resolution 160 --json
    """
    spec = build_spec(preset, groups, scale, repeats, resolution, classes, stage_channels, stem_channels,
                      bottleneck, stem, in_channels, shuffle)  # fmt: skip
    cost = count_complexity(spec)
    result = {"spec": spec.to_dict(), "label": spec.label, **cost.to_dict()}
    if layers:
        result["layers"] = [la._asdict() for la in cost.layers]
    if fvcore:
        from .complexity.fvcore_check import fvcore_count

        check = fvcore_count(spec)
        result["fvcore"] = {"macs": check.macs, "agrees": check.macs == cost.macs, "seconds": round(check.seconds, 3)}
    if as_json:
        _print_json(result)
        return
    console = _console()
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
    console.print(_rich_table(rows, "Per stage"))
    if layers:
        console.print(_rich_table(result["layers"], "Per layer"))


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
        _print_json(rows)
    else:
        _console().print(_rich_table(rows, "Presets (MFLOPs = multiply-adds at 224 px, as in the paper)"))


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
    from .complexity.sweep import complexity_rows
    from .report.tables import render_table

    base = build_spec(
        None, None, None, repeats, resolution, classes, None, None, bottleneck, stem, in_channels, shuffle
    )
    group_list = _int_list(groups, "--groups")
    try:
        scale_list = tuple(float(s) for s in scales.split(","))
    except ValueError:
        raise typer.BadParameter(f"--scales={scales!r} must be comma-separated numbers, e.g. 0.5,1.0") from None
    rows = complexity_rows(group_list, scale_list, base)
    if out is not None:
        from .atomic import write_atomically

        write_atomically(out, render_table(rows, out))
    if as_json:
        _print_json(rows)
        return
    _console().print(_rich_table(rows, f"Complexity ({base.resolution} px; MFLOPs = multiply-adds, as in the paper)"))
    if out is not None:
        _console().print(f"wrote {out}")


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="Where to write the ONNX model.")],
    preset: Preset = None,
    groups: Groups = None,
    scale: Scale = None,
    repeats: Repeats = None,
    resolution: Resolution = None,
    classes: Classes = None,
    stage_channels: StageChannels = None,
    stem_channels: StemChannels = None,
    bottleneck: Bottleneck = None,
    stem: Stem = None,
    in_channels: InChannels = None,
    shuffle: Shuffle = None,
    as_json: AsJson = False,
) -> None:
    """Export a variant to ONNX, checked against PyTorch in ONNX Runtime (max abs diff <= 1e-4).

    Example: shufflesearch export --groups 3 --scale 1.0 --out model.onnx
    """
    from .export import export_onnx

    spec = build_spec(preset, groups, scale, repeats, resolution, classes, stage_channels, stem_channels,
                      bottleneck, stem, in_channels, shuffle)  # fmt: skip
    result = export_onnx(spec, out)
    data = {"path": str(result.path), "bytes": result.bytes, "max_abs_diff": result.max_abs_diff,
            "opset": result.opset, "spec": spec.to_dict()}  # fmt: skip
    if as_json:
        _print_json(data)
    else:
        _console().print(f"wrote {result.path} ({result.bytes / 1e6:.2f} MB, opset {result.opset}); "
                         f"ONNX Runtime matches PyTorch (max abs diff {result.max_abs_diff:.1e})")  # fmt: skip


# -- entry point ----------------------------------------------------------------------
def _is_ours(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("shufflesearch")


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: every error ends as one line on stderr."""
    command = typer.main.get_command(app)
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["--help"]
    try:
        code = command.main(args=argv, prog_name="shufflesearch", standalone_mode=False)
    except typer.Abort:
        _fail("aborted", 130)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:
        if os.environ.get("SHUFFLESEARCH_DEBUG"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click's usage errors (typer vendors click)
            _fail(" ".join(exc.format_message().split()), exc.exit_code)
        if isinstance(exc, ValueError) and _is_ours(exc):
            _fail(message, 2)
        if _is_ours(exc):
            _fail(message, 1)
        if isinstance(exc, OSError):
            _fail(f"{exc.strerror or message}: {exc.filename}" if exc.filename else message, 1)
        raise
    sys.exit(code or 0)


if __name__ == "__main__":
    main()

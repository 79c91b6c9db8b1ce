"""The `shufflesearch` command line: parse, call one library function, render.

Heavy imports (torch, onnx, optuna, matplotlib) stay inside the commands that need them,
so `shufflesearch analyze` answers without loading torch. Errors become one line on
stderr in one place (`main`): each of our errors carries its exit code (`errors`: 2 for
usage, 1 for the machine or a device), OS errors exit 1. SHUFFLESEARCH_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from .complexity import count_complexity
from .errors import ShufflesearchError, UsageError
from .presets import get_preset, list_presets
from .spec import ShuffleNetSpec

app = typer.Typer(
    name="shufflesearch",
    help=(
        "ShuffleNet v1 architecture search and complexity analysis.\n\n"
        "Example: shufflesearch analyze --groups 8 --scale 0.5\n\n"
        "Example: shufflesearch search studies/demo.toml --workers 2"
    ),
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


# -- shared options -------------------------------------------------------------------
_INT_LIST_EXAMPLES = {"--seeds": "0,1", "--groups": "1,2,3,4,8", "--stage-channels": "240,480,960"}


def _int_list(text: str | None, name: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        example = _INT_LIST_EXAMPLES.get(name, "4,8,4")
        raise typer.BadParameter(f"{name}={text!r} must be comma-separated integers, e.g. {example}") from None


SEED_MAX = 2**63 - 1  # a non-negative int64: what torch's and numpy's generators both take


def _seed_list(text: str) -> tuple[int, ...]:
    seeds = _int_list(text, "--seeds")
    bad = [s for s in seeds if not 0 <= s <= SEED_MAX]
    if bad:
        raise typer.BadParameter(f"--seeds: {bad[0]} must be in [0, {SEED_MAX}], e.g. 0,1")
    return seeds


def _ssh_option_list(text: str) -> list[str]:
    """--ssh-options split as a shell would split it (nothing is run): an unclosed quote is a usage error."""
    import shlex

    try:
        return shlex.split(text)
    except ValueError as exc:
        raise typer.BadParameter(f"--ssh-options={text!r}: {exc}; e.g. '-i ~/.ssh/pi -p 2222'") from None


def _seconds(value: float, name: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{name}={value!r} must be a positive number of seconds, e.g. 300")
    return value


def _output_file(path: Path) -> Path:
    """An --out file: new, or a regular file to replace (never a folder, a device such as /dev/null, a pipe)."""
    if path.exists() and not path.is_file():
        raise typer.BadParameter(f"--out {str(path)!r} exists and is not a regular file; choose a file name")
    return path


def _storage_url(url: str) -> str:
    """An SQLite URL must name a database file: not a folder, not nothing, not another kind of file.

    sqlite3 would fail later with "unable to open database file" or "file is not a database" and no path.
    """
    if not url.strip():
        raise typer.BadParameter("--storage is empty; e.g. sqlite:///studies/x.db or postgresql://user@host/db")
    if not url.startswith("sqlite:///"):
        return url  # other schemes: open_storage names what it accepts
    path = Path(url.removeprefix("sqlite:///"))
    if not path.name or path.is_dir():
        raise typer.BadParameter(f"storage {url!r} names a folder, not a database file; e.g. sqlite:///studies/x.db")
    if path.is_file():
        with open(path, "rb") as f:
            header = f.read(16)
        if header and header != b"SQLite format 3\0":
            raise typer.BadParameter(f"storage {url!r}: {path} is not an SQLite database")
    return url


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
    base = get_preset(preset) if preset is not None else ShuffleNetSpec()  # '' is an unknown preset, not none
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
    # No emoji codes: ":x:" in a path or a label is text. Markup is ours; values go through _esc.
    return Console(highlight=False, emoji=False, width=None if sys.stdout.isatty() else 160)


def _esc(value: object) -> str:
    """A value (a path, a URL, a stored label) as literal text inside our markup: '[/]' must not parse."""
    from rich.markup import escape

    return escape(str(value))


def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _rich_table(rows: list[dict], title: str | None = None, columns: list[str] | None = None):
    from rich.table import Table
    from rich.text import Text

    # Text, not str: a cell or title is never parsed as markup (stored labels and paths may hold '[/]').
    columns = columns or (list(rows[0]) if rows else [])
    table = Table(title=Text(title) if title else None, title_justify="left")
    for col in columns:
        table.add_column(Text(col), justify="right" if rows and isinstance(rows[0][col], (int, float)) else "left")
    for row in rows:
        table.add_row(*(Text(_fmt(row[c])) for c in columns))
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

    if out is not None:
        _output_file(out)
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
        _console().print(f"wrote {_esc(out)}")


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

    Example: shufflesearch export --groups 3 --scale 1.0 --out reports/model.onnx
    """
    from .export import export_onnx

    spec = build_spec(preset, groups, scale, repeats, resolution, classes, stage_channels, stem_channels,
                      bottleneck, stem, in_channels, shuffle)  # fmt: skip
    result = export_onnx(spec, _output_file(out))
    data = {"path": str(result.path), "bytes": result.bytes, "max_abs_diff": result.max_abs_diff,
            "opset": result.opset, "spec": spec.to_dict()}  # fmt: skip
    if as_json:
        _print_json(data)
    else:
        _console().print(f"wrote {_esc(result.path)} ({result.bytes / 1e6:.2f} MB, opset {result.opset}); "
                         f"ONNX Runtime matches PyTorch (max abs diff {result.max_abs_diff:.1e})")  # fmt: skip


@app.command()
def latency(
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
    target: Annotated[str, typer.Option(help="'local', 'ssh://user@host[:port]' or 'arm64-emulated'.")] = "local",
    backend: Annotated[
        str, typer.Option(help="'onnxruntime' (what a device runs) or 'torch' (eager, local).")
    ] = "onnxruntime",
    threads: Annotated[int, typer.Option(help="Inference threads.")] = 1,
    runs: Annotated[int | None, typer.Option(help="Timed runs (default 50; emulated: 5 counted runs).")] = None,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up runs.")] = 10,
    python: Annotated[str, typer.Option(help="Python on the SSH device.")] = "python3",
    ssh_options: Annotated[str, typer.Option(help="Extra ssh options, e.g. '-i ~/.ssh/pi -p 2222'.")] = "",
    timeout: Annotated[float, typer.Option(help="Seconds before an SSH measurement is abandoned.")] = 300,
    profile: Annotated[str, typer.Option(help="Device profile for arm64-emulated estimates.")] = "snapdragon820",
    lut: Annotated[Path | None, typer.Option(help="Predict from a latency lookup table (`lut build`) instead.")] = None,
    as_json: AsJson = False,
) -> None:
    """Latency at batch 1: measured locally or on an SSH device, estimated under arm64 emulation, or from a LUT.

    Example: shufflesearch latency --groups 3 --scale 1.0

    Example: shufflesearch latency --groups 3 --scale 1.0 --target ssh://pi@raspberrypi.local
    """
    spec = build_spec(preset, groups, scale, repeats, resolution, classes, stage_channels, stem_channels,
                      bottleneck, stem, in_channels, shuffle)  # fmt: skip
    if lut is not None:
        from .latency.lut import LatencyTable

        table = LatencyTable.load(lut)
        predicted = table.predict_ms(spec)
        data = {"spec": spec.to_dict(), "predicted_ms": predicted, "kind": "lut-predicted", "lut": str(lut),
                "target": table.target, "threads": table.threads, "fit": table.fit}  # fmt: skip
        if as_json:
            _print_json(data)
        else:
            _console().print(f"{spec.label}: [bold]{predicted:.2f} ms predicted[/bold] from the lookup table {_esc(lut)} "
                             f"(blocks measured on {_esc(table.target)}, {table.threads} thread(s); sum + fitted overhead)")  # fmt: skip
        return
    if target == "arm64-emulated":
        from .latency.emulated import emulate_spec

        estimate = emulate_spec(spec, profile=profile, runs=5 if runs is None else runs)
        data = {"target": target, "kind": "emulated-estimate", "spec": spec.to_dict(), **estimate.to_dict()}
        if as_json:
            _print_json(data)
            return
        count = estimate.count
        mix = ", ".join(f"{_esc(k)} {100 * v / count.instructions:.0f}%" for k, v in count.mix.items() if v)
        _console().print(
            f"{spec.label}: [bold]~{estimate.estimated_ms:.1f} ms estimated[/bold] on {_esc(profile)} "
            f"(fit error +-{estimate.fit_error_pct:.1f}%, leave-one-out)\n"
            f"  from {count.instructions / 1e6:,.2f} M aarch64 instructions per inference ({mix}), counted under QEMU "
            f"{_esc(count.qemu_version)} (-cpu {_esc(count.cpu)}, MIDR {_esc(count.midr)}), onnxruntime "
            f"{_esc(count.ort_version)}\n  {_esc(estimate.basis)}. Emulated wall time is not a latency and is not reported."
        )
        return
    if target.startswith("ssh://"):
        from .latency.ssh import measure_remote

        result = measure_remote(spec, target, threads=threads, runs=50 if runs is None else runs, warmup=warmup, python=python,
                                ssh_options=_ssh_option_list(ssh_options), timeout_s=_seconds(timeout, "--timeout"))  # fmt: skip
    elif target == "local":
        from .latency.measure import measure_latency

        result = measure_latency(
            spec, backend=backend, threads=threads, runs=50 if runs is None else runs, warmup=warmup
        )
    else:
        raise typer.BadParameter(f"--target={target!r}: use local, ssh://user@host[:port] or arm64-emulated")
    if as_json:
        _print_json({"spec": spec.to_dict(), **result.to_dict()})
        return
    from .latency.environment import describe

    _console().print(
        f"{spec.label}: median [bold]{result.median_ms:.2f} ms[/bold], p90 {result.p90_ms:.2f} ms "
        f"(IQR {result.spread_pct:.0f}% of median), {result.runs} runs after {result.warmup} warm-up, "
        f"{result.threads} thread(s), {result.backend} on {_esc(result.target)} (measured)\n"
        f"  {_esc(describe(result.machine))}"
    )


Dataset = Annotated[str, typer.Option(help="fashion-mnist (default), cifar10 or imagefolder.")]
DataDir = Annotated[
    Path | None, typer.Option(help="Folder with the dataset files (IDX, cifar-10-batches-py, class folders).")
]
ImageSize = Annotated[int | None, typer.Option(help="Resize images to this many px (required for imagefolder).")]


@app.command()
def train(
    preset: Preset = None,
    groups: Groups = None,
    scale: Scale = None,
    repeats: Repeats = None,
    resolution: Resolution = None,
    stage_channels: StageChannels = None,
    stem_channels: StemChannels = None,
    bottleneck: Bottleneck = None,
    shuffle: Shuffle = None,
    dataset: Dataset = "fashion-mnist",
    data_dir: DataDir = None,
    image_size: ImageSize = None,
    subset: Annotated[int | None, typer.Option(help="Training images (class-balanced subset).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs over the subset.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Minibatch size.")] = None,
    time_budget: Annotated[float | None, typer.Option(help="Stop after this many seconds (anneals by time).")] = None,
    seed: Annotated[
        int, typer.Option(help="Seed for init, subset and order (same seed: same result).", min=0, max=SEED_MAX)
    ] = 0,
    threads: Annotated[int, typer.Option(help="Torch threads (1 is fastest on a shared CPU).", min=1)] = 1,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Train even if this exact run is cached.")] = False,
    as_json: AsJson = False,
) -> None:
    """Proxy accuracy: short, seeded training on a real dataset (the default recipe: docs/fidelity.md).

    Example: shufflesearch train --groups 3 --scale 0.5 --dataset fashion-mnist --epochs 2 --subset 10000
    """
    from .accuracy.cache import ResultCache
    from .accuracy.datasets import load_dataset
    from .accuracy.trainer import DEFAULT_FIDELITY, train_proxy

    spec = build_spec(preset, groups, scale, repeats, None, None, stage_channels, stem_channels, bottleneck, None,
                      None, shuffle)  # fmt: skip
    changes = {"train_images": subset, "epochs": epochs, "batch_size": batch_size, "resolution": resolution,
               "time_budget_s": time_budget}  # fmt: skip
    fidelity = DEFAULT_FIDELITY.replace(**{k: v for k, v in changes.items() if v is not None})
    data = load_dataset(dataset, data_dir, image_size)
    cache = None if no_cache else ResultCache()
    if as_json:
        result = train_proxy(spec, data, fidelity, seed=seed, cache=cache, threads=threads)
        _print_json(result.to_dict())
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("epoch {task.fields[epoch]:.2f}/{task.fields[epochs]}"), BarColumn(),
               TextColumn("loss {task.fields[loss]:.3f}  {task.fields[speed]:.0f} img/s"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=_console(), transient=True) as bar:
        task = bar.add_task("train", total=1.0, epoch=0.0, epochs=f"{fidelity.epochs:g}", loss=float("nan"), speed=0.0)

        def progress(p) -> None:
            bar.update(task, completed=p.step / max(p.steps, 1), epoch=p.epoch, loss=p.train_loss, speed=p.images_per_s)

        result = train_proxy(spec, data, fidelity, seed=seed, progress=progress, cache=cache, threads=threads)
    console = _console()
    trained = ShuffleNetSpec.from_dict(result.spec).label
    if result.status != "ok":
        console.print(f"{trained}: training {_esc(result.status)} after {result.images_seen:,} images; "
                      "try a lower learning rate or more warm-up")  # fmt: skip
        raise SystemExit(1)
    source = "cached result" if result.cached else f"{result.seconds:.0f} s, {result.images_seen:,} images seen"
    console.print(f"{trained} on {_esc(dataset)}: proxy top-1 [bold]{100 * result.top1:.2f}%[/bold] on the held-out "
                  f"test split ({source}); not an ImageNet accuracy")  # fmt: skip
    rows = [{"epoch": round(p["epoch"], 2), "images seen": p["images_seen"], "train loss": round(p["train_loss"], 4),
             "top-1 (curve subset) %": round(100 * p["top1"], 2) if p.get("top1") is not None else "-"}
            for p in result.curve]  # fmt: skip
    if rows:
        console.print(_rich_table(rows, "Learning curve"))


@app.command()
def score(
    preset: Preset = None,
    groups: Groups = None,
    scale: Scale = None,
    repeats: Repeats = None,
    resolution: Resolution = None,
    stage_channels: StageChannels = None,
    stem_channels: StemChannels = None,
    bottleneck: Bottleneck = None,
    shuffle: Shuffle = None,
    dataset: Dataset = "fashion-mnist",
    data_dir: DataDir = None,
    image_size: ImageSize = None,
    zero_cost: Annotated[str, typer.Option(help="Comma-separated scores.")] = "synflow,grad_norm,naswot",
    batch: Annotated[int, typer.Option(help="Minibatch size.", min=2)] = 64,
    seed: Annotated[int, typer.Option(help="Seed for init and the minibatch.", min=0, max=SEED_MAX)] = 0,
    as_json: AsJson = False,
) -> None:
    """Training-free scores on one minibatch (a pre-filter, not an accuracy).

    Example: shufflesearch score --groups 3 --scale 0.5 --zero-cost synflow,grad_norm,naswot
    """
    from .accuracy.datasets import load_dataset
    from .accuracy.trainer import DEFAULT_FIDELITY
    from .accuracy.zero_cost import score_on_dataset

    spec = build_spec(preset, groups, scale, repeats, None, None, stage_channels, stem_channels, bottleneck, None,
                      None, shuffle)  # fmt: skip
    fidelity = DEFAULT_FIDELITY.replace(resolution=resolution) if resolution else DEFAULT_FIDELITY
    data = load_dataset(dataset, data_dir, image_size)
    if batch > len(data.train_labels):
        raise typer.BadParameter(f"{batch} is more than the {len(data.train_labels)} training images of {dataset}; "
                                 f"e.g. --batch {min(64, len(data.train_labels))}", param_hint="--batch")  # fmt: skip
    trained, result = score_on_dataset(spec, data, fidelity, batch, tuple(zero_cost.split(",")), seed)
    if as_json:
        _print_json({"spec": trained.to_dict(), **result.to_dict()})
        return
    rows = [{"score": k, "value": v, "seconds": round(result.seconds[k], 3)} for k, v in result.scores.items()]
    _console().print(_rich_table(rows, f"Zero-cost scores of {trained.label} on {batch} {dataset} images"))


lut_app = typer.Typer(
    help="Latency lookup tables: per-block latencies measured once on a device.\n\n"
    "Example: shufflesearch lut build --target local --out studies/local.lut.json",
    no_args_is_help=True,
)
app.add_typer(lut_app, name="lut")


@lut_app.command("build")
def lut_build(
    out: Annotated[Path, typer.Option(help="Where to write the table, e.g. studies/pi4.lut.json.")],
    target: Annotated[str, typer.Option(help="'local' or 'ssh://user@host[:port]'.")] = "local",
    space: Annotated[
        Path | None, typer.Option(help="Cover the space of this study file (default: the default space).")
    ] = None,
    resolution: Resolution = None,
    classes: Classes = None,
    in_channels: InChannels = None,
    stem: Stem = None,
    threads: Annotated[int, typer.Option(help="Inference threads.")] = 1,
    runs: Annotated[int, typer.Option(help="Timed runs per block and round.")] = 20,
    rounds: Annotated[int, typer.Option(help="Timings per block (shuffled order); the median is kept.")] = 3,
    clock: Annotated[
        str, typer.Option(help="'wall', or 'cpu' (thread CPU time, 1 thread; for busy shared hosts).")
    ] = "wall",
    statistic: Annotated[str, typer.Option(help="'median_ms' (protocol) or 'min_ms'.")] = "median_ms",
    python: Annotated[str, typer.Option(help="Python on the SSH device.")] = "python3",
    ssh_options: Annotated[str, typer.Option(help="Extra ssh options, e.g. '-i ~/.ssh/pi'.")] = "",
    timeout: Annotated[float, typer.Option(help="Seconds per ssh call.")] = 1800,
    as_json: AsJson = False,
) -> None:
    """Measure every distinct block of a search space once on a target and store a device profile.

    Example: shufflesearch lut build --target local --out studies/local.lut.json

    Example: shufflesearch lut build --target ssh://pi@board --out studies/pi4.lut.json
    """
    from .atomic import check_writable
    from .latency.lut import build_lut
    from .search.space import SearchSpace
    from .search.study_file import load_study

    check_writable(_output_file(out).parent)  # a read-only or full folder fails before minutes of timing
    search_space = load_study(space).space if space else SearchSpace()
    changes = {"resolution": resolution, "num_classes": classes}
    search_space = dataclasses.replace(search_space, **{k: v for k, v in changes.items() if v is not None})
    progress = None if as_json else (lambda phase, done, total: typer.echo(f"{phase}: {done}/{total}", err=True))
    table = build_lut(search_space, target=target, threads=threads, runs=runs, rounds=rounds, clock=clock,
                      statistic=statistic, in_channels=in_channels or 3, stem=stem or "imagenet", python=python,
                      ssh_options=_ssh_option_list(ssh_options), timeout_s=_seconds(timeout, "--timeout"),
                      progress=progress)  # fmt: skip
    path = table.save(out)
    if as_json:
        _print_json({"path": str(path), **{k: v for k, v in table.to_dict().items() if k != "blocks"}})
    else:
        fit = table.fit
        _console().print(f"wrote {_esc(path)}: {len(table.blocks)} blocks measured on {_esc(table.target)}; whole-network fit "
                         f"MAPE {fit.get('mape_pct', float('nan')):.1f}% (leave-one-out {fit.get('loo_mape_pct', float('nan')):.1f}%)")  # fmt: skip


@lut_app.command("validate")
def lut_validate(
    table_file: Annotated[Path, typer.Argument(help="A latency table, e.g. studies/pi4.lut.json.")],
    specs: Annotated[int, typer.Option(help="Random specs of the space, each measured whole.", min=2, max=10_000)] = 20,
    space: Annotated[
        Path | None, typer.Option(help="Draw the specs from this study file's space (default: the default space).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random specs.", min=0, max=2**32 - 1)] = 1,
    runs: Annotated[int, typer.Option(help="Timed runs per spec and round.")] = 50,
    rounds: Annotated[int, typer.Option(help="Timings per spec (shuffled order); the median is kept.")] = 3,
    python: Annotated[str, typer.Option(help="Python on the SSH device.")] = "python3",
    ssh_options: Annotated[str, typer.Option(help="Extra ssh options, e.g. '-i ~/.ssh/pi'.")] = "",
    timeout: Annotated[float, typer.Option(help="Seconds per ssh call.")] = 1800,
    as_json: AsJson = False,
) -> None:
    """Check a table's predictions against whole networks measured on its own target, clock and statistic.

    Example: shufflesearch lut validate studies/local.lut.json --specs 20

    Example: shufflesearch lut validate studies/pi4.lut.json --space studies/latency-frontier.toml
    """
    from .latency.lut import LatencyTable, validate_lut
    from .search.space import SearchSpace
    from .search.study_file import load_study

    search_space = load_study(space).space if space else SearchSpace()
    table = LatencyTable.load(table_file)
    search_space = dataclasses.replace(search_space, resolution=table.resolution, num_classes=table.num_classes)
    chosen = [s.replace(in_channels=table.in_channels, stem=table.stem) for s in search_space.sample(specs, seed)]
    progress = None if as_json else (lambda phase, done, total: typer.echo(f"{phase}: {done}/{total}", err=True))
    result = validate_lut(table, chosen, runs=runs, rounds=rounds, seed=seed, python=python,
                          ssh_options=_ssh_option_list(ssh_options), timeout_s=_seconds(timeout, "--timeout"),
                          progress=progress)  # fmt: skip
    if as_json:
        _print_json({"table": str(table_file), "target": table.target, **result.to_dict()})
        return
    rows = [{"spec": r["label"], "predicted ms": round(r["predicted_us"] / 1e3, 3),
             "measured ms": round(r["measured_us"] / 1e3, 3), "error %": round(r["error_pct"], 1)}
            for r in sorted(result.rows, key=lambda r: r["measured_us"])]  # fmt: skip
    console = _console()
    console.print(_rich_table(rows, f"{table.name} on {table.target} ({table.clock} clock, {table.statistic})"))
    console.print(f"{len(rows)} random specs: MAPE {result.mape_pct:.1f}%, Kendall tau {result.kendall_tau:.3f}, "
                  f"within ±10%: {100 * result.within_10pct:.0f}% ({result.seconds:.0f} s)", markup=False)  # fmt: skip


@app.command()
def fidelity(
    dataset: Dataset = "fashion-mnist",
    data_dir: DataDir = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; results are averaged.")] = "0,1",
    workers: Annotated[int, typer.Option(help="Models trained at once (one thread each).", min=1)] = 2,
    subset: Annotated[int | None, typer.Option(help="Training images per model.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs per model.")] = None,
    resolution: Annotated[int | None, typer.Option(help="Training resolution in px.")] = None,
    zero_cost: Annotated[
        bool, typer.Option("--zero-cost", help="Also rank zero-cost scores against the proxy.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """How well proxy accuracy ranks the paper's 15 Table 2 models (Spearman vs ImageNet).

    Example: shufflesearch fidelity --seeds 0,1 --workers 2 --zero-cost
    """
    from .accuracy.cache import ResultCache
    from .accuracy.datasets import load_dataset
    from .accuracy.fidelity import run_fidelity
    from .accuracy.trainer import DEFAULT_FIDELITY

    changes = {"train_images": subset, "epochs": epochs, "resolution": resolution}
    fid = DEFAULT_FIDELITY.replace(**{k: v for k, v in changes.items() if v is not None})
    data = load_dataset(dataset, data_dir)
    seed_list = _seed_list(seeds)
    progress = None if as_json else (lambda p: typer.echo(f"  {p}", err=True))
    report = run_fidelity(data, fid, seeds=seed_list, progress=progress, cache=ResultCache(), workers=workers)
    result = report.to_dict()
    if zero_cost:
        from .accuracy.fidelity import table2_specs
        from .accuracy.zero_cost import score_correlations, score_on_dataset

        specs = table2_specs()
        scores = [score_on_dataset(spec, data, fid)[1].scores for spec in specs]
        top1 = [next(r["top1"] for r in report.rows if (r["groups"], r["scale"]) == (s.groups, s.scale))
                for s in specs]  # fmt: skip
        result["zero_cost_spearman_vs_proxy"] = score_correlations(specs, top1, scores)
    if as_json:
        _print_json(result)
        return
    console = _console()
    console.print(f"Spearman vs the paper's ImageNet accuracy (15 models): overall [bold]{report.spearman_overall:.3f}"
                  f"[/bold]; by scale {report.spearman_by_scale}; g>1 beats g=1: {report.direction_ok_by_scale}; "
                  f"seed spread {100 * report.seed_spread:.2f} points; {report.minutes:.1f} training-minutes")  # fmt: skip
    if zero_cost:
        console.print(
            f"zero-cost scores and baselines, Spearman vs proxy top-1: {result['zero_cost_spearman_vs_proxy']}"
        )


@app.command()
def setup(
    component: Annotated[str, typer.Argument(help="'arm64': the QEMU sysroot behind --target arm64-emulated.")],
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if cached.")] = False,
    as_json: AsJson = False,
) -> None:
    """Install a cached component (about a minute, once).

    Example: shufflesearch setup arm64
    """
    if component != "arm64":
        raise typer.BadParameter(f"unknown component {component!r}; available: arm64")
    from .latency.arm64_sysroot import ensure_sysroot, sysroot_status

    ensure_sysroot(progress=None if as_json else (lambda m: typer.echo(m, err=True)), force=force)
    status = sysroot_status()
    if as_json:
        _print_json(status)
    else:
        _console().print(
            f"arm64 emulation ready in {_esc(status.get('cache_dir'))} ({_esc(status.get('qemu_version'))})"
        )


def _progress_table(summaries, trials: int, started: float):
    import time

    rows = []
    for s in summaries:
        done = s.complete + s.pruned
        rows.append({
            "study": s.name, "MFLOPs window": f"{s.window_mflops[0]:g}-{s.window_mflops[1]:g}",
            "candidates": s.candidates, "done": f"{done}/{trials}", "running": s.running, "pruned": s.pruned,
            "failed": s.failed, "best top-1": f"{s.best_top1:.4f}" if s.best_top1 is not None else "-",
            "best spec": s.best_label or "-", "s/trial": f"{s.mean_trial_s:.1f}" if s.mean_trial_s else "-",
        })  # fmt: skip
    return _rich_table(rows, f"Search progress ({time.monotonic() - started:.0f} s; top-1 = proxy accuracy)")


@app.command()
def search(
    study_file: Annotated[Path, typer.Argument(help="A study file (TOML), e.g. studies/frontier.toml.")],
    trials: Annotated[
        int | None, typer.Option(help="Trials per budget (default: the file's).", min=1, max=100_000)
    ] = None,
    workers: Annotated[int, typer.Option(help="Local worker processes.", min=1, max=64)] = 1,
    storage: Annotated[str | None, typer.Option(help="Storage URL, e.g. postgresql://user@db/nas.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a study that has trials (error if none).")] = False,
    as_json: AsJson = False,
) -> None:
    """Budget-constrained architecture search with Optuna (every machine may run the same command).

    Example: shufflesearch search studies/frontier.toml --trials 60 --workers 2
    """
    from . import interrupt

    # Ctrl-C is noted from here on and acted on where it is safe: loading the study imports torch,
    # and a KeyboardInterrupt inside that import can abort the process.
    with interrupt.deferred():
        _search(study_file, trials, workers, storage, resume, as_json)


def _search(study_file: Path, trials: int | None, workers: int, storage: str | None, resume: bool, as_json: bool):
    import time

    from .search.parallel import check_resumable, run_search, storage_url_for
    from .search.storage import redact
    from .search.study_file import load_study

    config = load_study(study_file)
    url = _storage_url(storage_url_for(config, storage))
    if resume:
        check_resumable(config, url)
    wanted = trials or config.trials
    again = " ".join([f"shufflesearch search {study_file}", *([f"--trials {trials}"] if trials else []),
                      *([f"--workers {workers}"] if workers > 1 else []),
                      *([f"--storage {redact(storage)}"] if storage else [])])  # fmt: skip
    if not as_json and _finished(url, config, wanted):
        typer.echo(f"study {config.name} is complete ({wanted} trials per budget) in {redact(url)}; "
                   f"add trials with --trials N, or report it: shufflesearch report {study_file}")  # fmt: skip
        return
    started = time.monotonic()
    console = _console()
    try:
        if as_json:
            summaries = run_search(config, url, trials, workers, resume)
        else:
            from rich.live import Live

            console.print(f"study {config.name} ({config.mode}) in {_esc(redact(url))}; {workers} worker(s)")
            with Live(console=console, refresh_per_second=1, transient=False) as live:
                summaries = run_search(config, url, trials, workers, resume,
                                       on_progress=lambda s: live.update(_progress_table(s, wanted, started)))  # fmt: skip
            if not console.is_terminal:
                console.line()  # a log file gets the table's last line ended
    except KeyboardInterrupt:
        try:
            check_resumable(config, url)
        except Exception:  # stopped before the study was created (or the storage is gone): start it afresh
            typer.echo(f"interrupted before any trial was stored; start again with: {again}", err=True)
            raise SystemExit(130) from None
        typer.echo(f"interrupted: running trials are marked failed and will be retried; the study is kept in "
                   f"{redact(url)}; continue with: {again} --resume", err=True)  # fmt: skip
        raise SystemExit(130) from None
    if as_json:
        _print_json({"study": config.name, "storage": redact(url), "studies": [s.to_dict() for s in summaries]})


def _finished(url: str, config, wanted: int) -> bool:
    """Every budget window of the study holds `wanted` finished trials and nothing queued or running."""
    from .search.records import summarize
    from .search.storage import NoSuchStorage

    try:
        by_name = {s.name: s for s in summarize(url, list(config.budget_windows()))}
    except NoSuchStorage:
        return False  # a first run: the search creates it
    return set(by_name) >= set(config.budget_windows()) and all(
        s.complete + s.pruned >= wanted and s.running == s.waiting == 0 for s in by_name.values()
    )


studies_app = typer.Typer(help="Inspect stored studies.\n\nExample: shufflesearch studies list", no_args_is_help=True)
app.add_typer(studies_app, name="studies")


@studies_app.command("list")
def studies_list(
    storage: Annotated[str | None, typer.Option(help="Storage URL (default: every studies/*.db).")] = None,
    as_json: AsJson = False,
) -> None:
    """What is stored: progress and best result per study and budget.

    Example: shufflesearch studies list

    Example: shufflesearch studies list --storage postgresql://user@db/nas
    """
    from .search.records import summarize
    from .search.storage import NoSuchStorage, StorageError, redact

    urls = [storage] if storage is not None else [f"sqlite:///{p}" for p in sorted(Path("studies").glob("*.db"))]
    urls = [_storage_url(url) for url in urls]
    rows = []
    for url in urls:
        try:
            summaries = summarize(url)
        except StorageError as exc:
            if storage is not None:
                raise
            # Of every studies/*.db, one being created right now or another program's: the others still count.
            if not isinstance(exc, NoSuchStorage):
                typer.echo(f"warning: skipped {' '.join(str(exc).split())}", err=True)
            continue
        rows += [{"storage": redact(url), **s.to_dict()} for s in summaries]
    if as_json:
        _print_json(rows)
        return
    if not rows:
        _console().print("no studies stored yet (run `shufflesearch search studies/demo.toml`)")
        return
    table_rows = [
        {"storage": r["storage"], "study": r["name"], "mode": r["mode"],
         "MFLOPs window": "-".join(f"{x:g}" for x in r["window_mflops"]), "complete": r["complete"],
         "pruned": r["pruned"], "running": r["running"], "waiting": r["waiting"], "failed": r["failed"],
         "best top-1": f"{r['best_top1']:.4f}" if r["best_top1"] is not None else "-",
         "best spec": r["best_label"] or "-"}
        for r in rows
    ]  # fmt: skip
    _console().print(_rich_table(table_rows, "Stored studies (top-1 = proxy accuracy)"))


@app.command()
def report(
    study_file: Annotated[Path, typer.Argument(help="A study file (TOML), e.g. studies/demo.toml.")],
    storage: Annotated[str | None, typer.Option(help="Storage URL (default: the study file's).")] = None,
    study: Annotated[list[str] | None, typer.Option(help="Only this Optuna study, e.g. demo-13M (repeatable).")] = None,
    out: Annotated[Path | None, typer.Option(help="Report folder (default: reports/<study name>/).")] = None,
    as_json: AsJson = False,
) -> None:
    """Tables (CSV, Markdown), plots (PNG, SVG) and an offline HTML page of a study's results.

    Example: shufflesearch report studies/demo.toml --out reports/demo
    """
    from .report.build import build_report
    from .search.parallel import storage_url_for
    from .search.records import load_records, study_attrs
    from .search.storage import NoSuchStorage, redact
    from .search.study_file import load_study

    config = load_study(study_file)
    url = _storage_url(storage_url_for(config, storage))
    windows = config.budget_windows()
    unknown = sorted(set(study or ()) - set(windows))
    if unknown:
        raise typer.BadParameter(f"{unknown[0]!r} is not a study of {study_file}; choose from {', '.join(windows)}",
                                 param_hint="--study")  # fmt: skip
    names = [n for n in windows if not study or n in study]
    try:
        stored = study_attrs(url)
    except NoSuchStorage:
        stored = {}  # nothing searched yet: said below
    loaded = load_records(url, [n for n in names if n in stored]) if stored else {}
    records = {n: loaded.get(n, []) for n in names}  # a budget not started yet shows as an empty study
    if not any(records.values()):
        raise NothingToReport(f"study {config.name!r} has no trials yet in {redact(url)}; "
                              f"run: shufflesearch search {study_file}")  # fmt: skip
    attrs = {n: {"mode": config.mode, "window_mflops": list(windows[n]), "dataset": config.dataset, **stored.get(n, {})}
             for n in names}  # fmt: skip
    result = build_report(records, attrs, out or Path("reports") / config.name,
                          title=f"ShuffleNet search report: {config.name} ({config.mode})")  # fmt: skip
    if as_json:
        _print_json(result.to_dict())
        return
    console = _console()
    for line in result.notes:
        console.print(f"note: {line}", markup=False, highlight=False)
    for line in result.summary:
        console.print(line, markup=False, highlight=False)
    rows = [
        {"budget": f"≤{r['budget_mflops']:g} M", "kind": r["kind"], "name": r["name"], "spec": r["label"],
         "MFLOPs": r["mflops"], "params (M)": r["params_m"],
         "proxy top-1 %": r["top1_pct"] if r["top1_pct"] is not None else "-",
         "paper ImageNet top-1 %": r["paper_imagenet_top1_pct"] if r["paper_imagenet_top1_pct"] is not None else "-"}
        for r in result.tables["best_per_budget"]
    ]  # fmt: skip
    if rows:
        console.print(_rich_table(rows, f"Best per budget vs the paper's models (proxy top-1 on {config.dataset})"))
    console.print(f"report: {result.out_dir / 'index.html'} ({len(result.files)} files)", markup=False)


class NothingToReport(UsageError):
    """`report` of a study that has not been searched yet: a usage error, not an empty report."""


# -- entry point ----------------------------------------------------------------------
def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    typer.echo(f"warning: {' '.join(str(message).split())}", err=True)


MAX_ERROR_CHARS = 1000  # an error may quote the offending value: a 1 MB value is not a readable line


def _fail(message: str, code: int) -> None:
    if len(message) > MAX_ERROR_CHARS:
        message = f"{message[:MAX_ERROR_CHARS]}... ({len(message) - MAX_ERROR_CHARS:,} more characters)"
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


@functools.cache
def _click_command():
    # Built once per process (~0.1 s): the tests call main() thousands of times in one process.
    return typer.main.get_command(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: every error ends as one line on stderr."""
    warnings.showwarning = _one_line_warning
    command = _click_command()
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
        if type(exc).__name__ == "NoArgsIsHelpError":  # `shufflesearch lut`: its help, as `shufflesearch` alone
            typer.echo(exc.format_message())
            sys.exit(0)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click's usage errors (typer vendors click)
            _fail(" ".join(exc.format_message().split()), exc.exit_code)
        if isinstance(exc, ShufflesearchError):  # ours: the error knows whose fault it is
            _fail(message, exc.exit_code)
        if isinstance(exc, RecursionError):  # a stored or given value nested deeper than any parser goes
            _fail(f"an input is nested too deeply to read ({message})", 2)
        if isinstance(exc, MemoryError):
            _fail("out of memory; lower the widths, resolution, batch or number of workers", 1)
        if isinstance(exc, OSError):
            _fail(f"{exc.strerror or message}: {exc.filename}" if exc.filename else message, 1)
        raise
    if code == 130:  # typer turns a KeyboardInterrupt into a silent exit code 130
        _fail("interrupted", 130)
    sys.exit(code or 0)


if __name__ == "__main__":
    main()

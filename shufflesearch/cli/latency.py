"""Latency commands: latency (local, SSH, arm64-emulated, from a table) and `lut build` / `lut validate`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from ..latency import lut as lut_library  # by module: a command calls (and a test replaces) lut_library.build_lut
from ..latency.device_runner import CLOCKS
from ..latency.lut.table import STATISTICS
from ..latency.measure import BACKENDS, measure_latency
from ..spec import ShuffleNetSpec
from . import render
from .app import app
from .options import (
    TARGETS,
    AsJson,
    InChannels,
    Python,
    Stem,
    given,
    library_default,
    one_of,
    output_file,
    seconds,
    spec_options,
    suggesting,
    with_default,
)
from .options import ssh_option_list as ssh_options_of

SshOptions = Annotated[str, typer.Option(help="Extra ssh options, e.g. '-i ~/.ssh/pi -p 2222'.")]
SshTimeout = Annotated[float, typer.Option(help="Seconds per ssh call.")]
Target = Annotated[
    str,
    suggesting(TARGETS, "local, ssh://user@host[:port] or arm64-emulated (estimated from instruction counts, no "
               "device).", metavar="<target>"),
]  # fmt: skip


# A table's input size and classes: the --space file's, else the default space's (the spec's defaults).
SpaceResolution = Annotated[
    int | None, typer.Option(help=with_default("Input px the blocks are timed at (with --space: its).", 224))
]
SpaceClasses = Annotated[int | None, typer.Option(help=with_default("Classes of the head (with --space: its).", 1000))]


# Left out (None), the library's own default applies: read here, once, when the module loads (typer reads a
# signature's annotations later, when a command is built).
_build, _validate = lut_library.build_lut, lut_library.validate_lut
Runs = Annotated[
    int | None,
    typer.Option(
        help=with_default("Timed runs (arm64-emulated: 5 counted runs).", library_default(measure_latency, "runs"))
    ),
]
Warmup = Annotated[
    int | None, typer.Option(help=with_default("Untimed warm-up runs.", library_default(measure_latency, "warmup")))
]
BlockRuns = Annotated[
    int | None, typer.Option(help=with_default("Timed runs per block and round.", library_default(_build, "runs")))
]
BlockRounds = Annotated[
    int | None,
    typer.Option(help=with_default("Timings per block (shuffled order); the median is kept.",
                                   library_default(_build, "rounds"))),
]  # fmt: skip
SpecRuns = Annotated[
    int | None, typer.Option(help=with_default("Timed runs per spec and round.", library_default(_validate, "runs")))
]
SpecRounds = Annotated[
    int | None,
    typer.Option(help=with_default("Timings per spec (shuffled order); the median is kept.",
                                   library_default(_validate, "rounds"))),
]  # fmt: skip


def _profiles() -> list[str]:
    from ..latency.emulated.device_profiles import list_profiles

    return list_profiles()


def _tables() -> list[str]:
    from ..latency.lut.shipped import shipped_tables

    return sorted(shipped_tables())


Profile = Annotated[
    str,
    suggesting(
        _profiles, "Device profile of arm64-emulated estimates (see docs/arm-emulation.md).", metavar="<profile>"
    ),
]


def _phase_progress(as_json: bool):
    return None if as_json else (lambda phase, done, total: render.say(f"{phase}: {done}/{total}", err=True))


@app.command()
@spec_options()
def latency(
    spec: ShuffleNetSpec,
    target: Target = "local",
    backend: Annotated[
        str, one_of(BACKENDS, "onnxruntime: what a device runs; torch: eager PyTorch (local only).")
    ] = "onnxruntime",
    threads: Annotated[int, typer.Option(help="Inference threads.")] = 1,
    runs: Runs = None,
    warmup: Warmup = None,
    python: Python = "python3",
    ssh_options: SshOptions = "",
    timeout: Annotated[float, typer.Option(help="Seconds before an SSH measurement is abandoned.")] = 300,
    profile: Profile = "snapdragon820",
    lut: Annotated[
        str | None,
        suggesting(
            _tables,
            "Predict from a latency lookup table instead: a file (`lut build`) or the name of a "
            "shipped table, e.g. snapdragon820 (estimated, no device needed).",
            metavar="<file|name>",
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Latency at batch 1: measured locally or on an SSH device, estimated under arm64 emulation, or from a LUT.

    Example: shufflesearch latency --groups 3 --scale 1.0

    Example: shufflesearch latency --groups 3 --scale 1.0 --target ssh://pi@raspberrypi.local
    """
    from ..latency.emulated import EmulatedEstimate
    from ..latency.targets import TablePrediction, latency_on

    result = latency_on(spec, target, lut=lut, backend=backend, threads=threads, runs=runs, warmup=warmup,
                        python=python, ssh_options=ssh_options_of(ssh_options),
                        timeout_s=seconds(timeout, "--timeout"), profile=profile)  # fmt: skip
    if isinstance(result, TablePrediction):
        data, show = result.to_dict(), lambda: _predicted(result)
    elif isinstance(result, EmulatedEstimate):
        data = {"target": target, "kind": "emulated-estimate", "spec": spec.to_dict(), **result.to_dict()}
        show = lambda: _emulated(spec, result, profile)  # noqa: E731
    else:
        data, show = {"spec": spec.to_dict(), **result.to_dict()}, lambda: _measured(spec, result)
    if as_json:
        render.print_json(data)
    else:
        show()


def _predicted(result) -> None:
    esc, error = render.esc, result.error
    checked = (f"; against whole networks: MAPE {error['mape_pct']:.1f}%, Kendall tau {error['kendall_tau']:.3f} on "
               f"{error['specs']} specs" if error else "; never validated against whole networks")  # fmt: skip
    if result.table_kind == "estimated":
        render.console().print(
            f"{result.spec.label}: [bold]~{result.predicted_ms:.2f} ms estimated[/bold] on {esc(result.profile)} from "
            f"the lookup table {esc(result.lut)} (sum of per-block estimates + fitted overhead{esc(checked)})\n"
            f"  {esc(result.basis)}. Not a latency measurement."
        )
        return
    render.console().print(
        f"{result.spec.label}: [bold]{result.predicted_ms:.2f} ms predicted[/bold] from the lookup table "
        f"{esc(result.lut)} (blocks measured on {esc(result.target)}, {result.threads} thread(s); "
        f"sum + fitted overhead{esc(checked)})"
    )


def _emulated(spec: ShuffleNetSpec, estimate, profile: str) -> None:
    esc, count = render.esc, estimate.count
    mix = ", ".join(f"{esc(k)} {100 * v / count.instructions:.0f}%" for k, v in count.mix.items() if v)
    render.console().print(
        f"{spec.label}: [bold]~{estimate.estimated_ms:.1f} ms estimated[/bold] on {esc(profile)} "
        f"(fit error +-{estimate.fit_error_pct:.1f}%, leave-one-out)\n"
        f"  from {count.instructions / 1e6:,.2f} M aarch64 instructions per inference ({mix}), counted under QEMU "
        f"{esc(count.qemu_version)} (-cpu {esc(count.cpu)}, MIDR {esc(count.midr)}), onnxruntime "
        f"{esc(count.ort_version)}\n  {esc(estimate.basis)}. Emulated wall time is not a latency and is not reported."
    )


def _measured(spec: ShuffleNetSpec, result) -> None:
    from ..environment import describe

    render.console().print(
        f"{spec.label}: median [bold]{result.median_ms:.2f} ms[/bold], p90 {result.p90_ms:.2f} ms "
        f"(IQR {result.spread_pct:.0f}% of median), {result.runs} runs after {result.warmup} warm-up, "
        f"{result.threads} thread(s), {result.backend} on {render.esc(result.target)} (measured)\n"
        f"  {render.esc(describe(result.machine))}"
    )


lut_app = typer.Typer(
    help="Latency lookup tables: per-block latencies measured once on a device, or estimated for a device profile "
    "under arm64 emulation.\n\n"
    "Example: shufflesearch lut build --target local --out studies/local.lut.json",
    no_args_is_help=True,
)
app.add_typer(lut_app, name="lut")


def _space(study_file: Path | None):
    from ..search.space import SearchSpace
    from ..search.study_file import load_study

    return load_study(study_file).space if study_file else SearchSpace()


@lut_app.command("build")
def lut_build(
    out: Annotated[Path, typer.Option(help="Where to write the table, e.g. studies/pi4.lut.json.")],
    target: Target = "local",
    space: Annotated[
        Path | None, typer.Option(help="Cover the space of this study file (default: the default space).")
    ] = None,
    profile: Profile = "snapdragon820",
    resolution: SpaceResolution = None,
    classes: SpaceClasses = None,
    in_channels: InChannels = None,
    stem: Stem = None,
    threads: Annotated[int, typer.Option(help="Inference threads.")] = 1,
    runs: BlockRuns = None,
    rounds: BlockRounds = None,
    clock: Annotated[
        str, one_of(tuple(CLOCKS), "wall, or cpu: thread CPU time (1 thread; for busy shared hosts).")
    ] = "wall",
    statistic: Annotated[str, one_of(STATISTICS, "median_ms (the protocol's) or min_ms.")] = "median_ms",
    python: Python = "python3",
    ssh_options: SshOptions = "",
    timeout: SshTimeout = 1800,
    as_json: AsJson = False,
) -> None:
    """Measure every distinct block of a search space once on a target, or estimate it under arm64 emulation.

    Example: shufflesearch lut build --target local --out studies/local.lut.json

    Example: shufflesearch lut build --target ssh://pi@board --out studies/pi4.lut.json

    Example: shufflesearch lut build --target arm64-emulated --profile snapdragon820 --out studies/sd820.lut.json
    """
    from ..atomic import check_writable

    check_writable(output_file(out).parent)  # a read-only or full folder fails before minutes of timing
    search_space = dataclasses.replace(_space(space), **given(resolution=resolution, num_classes=classes))
    table = lut_library.build_lut(search_space, target=target, threads=threads, clock=clock, statistic=statistic, python=python,
                      ssh_options=ssh_options_of(ssh_options), timeout_s=seconds(timeout, "--timeout"),
                      progress=_phase_progress(as_json), profile=profile,
                      **given(runs=runs, rounds=rounds, in_channels=in_channels, stem=stem))  # fmt: skip
    path = table.save(out)
    if as_json:
        data = {k: v for k, v in table.to_dict().items() if k != "blocks"}
        render.print_json(
            {"path": str(path), "blocks": len(table.blocks), "build_seconds": table.build_seconds, **data}
        )
        return
    fit, error, esc = table.fit, table.measured_error, render.esc
    where = (f"estimated for {esc(table.profile)} from aarch64 instruction counts under QEMU (not measured)"
             if table.estimated else f"measured on {esc(table.target)}")  # fmt: skip
    checked = (f"; against {esc(error['against'])} on {error['specs']} random specs: MAPE {error['mape_pct']:.1f}%, "
               f"Kendall tau {error['kendall_tau']:.3f}" if error else "")  # fmt: skip
    render.console().print(
        f"wrote {esc(path)}: {len(table.blocks)} blocks {where} in {table.build_seconds:.0f} s; whole-network "
        f"fit MAPE {fit.get('mape_pct', float('nan')):.1f}% (leave-one-out {fit.get('loo_mape_pct', float('nan')):.1f}%)"
        f"{checked}"
    )


@lut_app.command("validate")
def lut_validate(
    table_file: Annotated[
        str, typer.Argument(help="A latency table file, e.g. studies/pi4.lut.json, or a shipped table's name.")
    ],
    specs: Annotated[int, typer.Option(help="Random specs of the space, each measured whole.", min=2, max=10_000)] = 20,
    space: Annotated[
        Path | None, typer.Option(help="Draw the specs from this study file's space (default: the default space).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random specs.", min=0, max=2**32 - 1)] = 1,
    runs: SpecRuns = None,
    rounds: SpecRounds = None,
    python: Python = "python3",
    ssh_options: SshOptions = "",
    timeout: SshTimeout = 1800,
    record: Annotated[
        bool, typer.Option("--record", help="Store the measured error in the table file (its `validation`).")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Check a table's predictions against whole networks measured on its own target, clock and statistic.

    An estimated table (arm64-emulated) is checked against whole-network emulation on its profile.

    Example: shufflesearch lut validate studies/local.lut.json --specs 20

    Example: shufflesearch lut validate studies/pi4.lut.json --space studies/latency-frontier.toml
    """
    from ..latency.lut import record_validation, resolve_table
    from ..search.space import specs_for_table

    search_space = _space(space)
    table = resolve_table(table_file)
    if record:
        record_validation(table, None)  # a shipped table or a read-only file fails now, not after the measuring
    chosen = specs_for_table(search_space, table, specs, seed)
    result = lut_library.validate_lut(table, chosen, seed=seed, python=python, ssh_options=ssh_options_of(ssh_options),
                          timeout_s=seconds(timeout, "--timeout"), progress=_phase_progress(as_json),
                          **given(runs=runs, rounds=rounds))  # fmt: skip
    if record:
        record_validation(table, result, seed)
    if as_json:
        render.print_json({"table": str(table_file), "target": table.target, "kind": table.kind,
                           "profile": table.profile, "recorded": record, **result.to_dict()})  # fmt: skip
        return
    truth = "emulated_us" if table.estimated else "measured_us"
    rows = [{"spec": r["label"], "predicted ms": round(r["predicted_us"] / 1e3, 3),
             "measured ms": round(r[truth] / 1e3, 3), "error %": round(r["error_pct"], 1)}
            for r in sorted(result.rows, key=lambda r: r[truth])]  # fmt: skip
    console = render.console()
    if table.estimated:
        rows = [{"spec": r["spec"], "table ms (estimated)": r["predicted ms"],
                 "whole-network emulation ms (estimated)": r["measured ms"], "error %": r["error %"]} for r in rows]  # fmt: skip
        title = f"{table.name}: estimated on {table.profile}, against {result.against}"
    else:
        title = f"{table.name} on {table.target} ({table.clock} clock, {table.statistic})"
    console.print(render.rich_table(rows, title))
    console.print(f"{len(rows)} random specs: MAPE {result.mape_pct:.1f}%, Kendall tau {result.kendall_tau:.3f}, "
                  f"within ±10%: {100 * result.within_10pct:.0f}% ({result.seconds:.0f} s)", markup=False)  # fmt: skip

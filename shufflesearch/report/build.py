"""One call: study records -> a report folder (CSV + Markdown tables, PNG + SVG plots, index.html).

The folder is built next to `out_dir` and swapped in only when complete, so a failure
(a full disk, a bug, Ctrl-C) leaves the previous report as it was. A rebuild replaces only the
files the last report wrote and keeps anything else in the folder (folder.py).

>>> result = build_report(load_records("sqlite:///studies/demo.db"), attrs, "reports/demo")  # doctest: +SKIP
>>> result.files[:2]  # doctest: +SKIP
[PosixPath('index.html'), PosixPath('tables/studies.csv')]
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from .. import __version__
from ..atomic import naming, write_atomically
from ..search.results import TrialRecord
from . import plots
from .folder import MARKER, ReportError, carry_over, digest, existing, manifest, swap_in
from .frames import PAPER, SEARCHED, PaperLatency, ReportFrames, build_frames, public
from .html import GENERATOR, PlotEntry, TableEntry, format_cell, render_page
from .latency_view import disagreement_lines
from .races import race_lines
from .tables import frame_rows, spreadsheet_safe, to_csv, to_markdown

__all__ = ["MARKER", "ReportError", "ReportResult", "build_report", "summary_lines"]

COLLAPSE_ROWS = 40  # longer tables are folded in the page (they are complete in CSV/Markdown)
DPI = 110  # PNG resolution (tests draw at less: the same code, fewer pixels)


@dataclass(frozen=True)
class ReportResult:
    out_dir: Path
    files: list[Path]  # relative to out_dir
    summary: list[str]  # one line per study and per budget
    notes: list[str]  # what a reader must know: running, empty or failed studies, skipped plots
    tables: dict[str, list[dict]] = field(default_factory=dict)  # "studies", "best_per_budget": for a terminal

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "files": [str(f) for f in self.files], "summary": self.summary,
                "notes": self.notes, "tables": self.tables}  # fmt: skip


def build_report(
    records_by_study: dict[str, list[TrialRecord]], study_attrs: dict[str, dict], out_dir: str | os.PathLike,
    title: str | None = None, paper_latency: PaperLatency | None = None,
) -> ReportResult:  # fmt: skip
    """Write the report for these studies to `out_dir`: new, empty or an earlier report, whose files it replaces.

    `paper_latency`: the studies' latency predictor, to place paper models in latency budgets (`build_frames`)."""
    out_dir = Path(out_dir)
    # The swap renames through the parent: `a/../a` would rename `a` away and then look for it inside
    # itself, and a symlinked folder would leave its renamed link behind. Work on the real folder.
    target = out_dir.resolve()
    existing(target, out_dir, *_layout())  # refused before the work, not after
    frames = build_frames(records_by_study, study_attrs, paper_latency)
    summary = summary_lines(frames)
    title = title or "ShuffleNet search report: " + (", ".join(records_by_study) or "no studies")
    with naming(out_dir):  # a full disk or a read-only folder: the error names the report, not a temporary name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; a report is meant to be read (and served)
            files = _write_report(tmp, frames, summary, title)
            before = existing(target, out_dir, *_layout())  # again: the user may have added a file meanwhile
            carry_over(target, tmp, before.keep, out_dir)
            swap_in(tmp, target, before)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    tables = {"studies": frame_rows(frames.studies), "best_per_budget": frame_rows(public(frames.best))}
    return ReportResult(out_dir, files, summary, list(frames.notes), tables)


# name, title, caption, frame getter; a table is written even when empty (its header says what would be there).
_TABLES = [
    ("provenance", "How these numbers were made",
     "Per study: the training recipe its trials recorded, the split that scored them, seeds, devices, the data "
     "(name:fingerprint), the training resolution (labels count MFLOPs at the spec's 224 px) and what this "
     "recipe's ranking was measured to be worth.", lambda f: f.provenance),
    ("studies", "Studies", "One row per Optuna study: its budget window (MFLOPs, and ms where latency bounds it) and "
     "how many trials are in each state.",
     lambda f: f.studies),
    ("best_per_budget", "Best per budget vs the paper's models",
     "Per budget: the searched winner (the best proxy score, or the race's winner where finalists were raced), "
     "then every paper model (official presets and Table 2 models) "
     "inside the same window (in ms: by the study's latency predictor). top1_pct is proxy accuracy (blank: not "
     "trained in this study); paper_imagenet_top1_pct is the paper's published ImageNet number, for context only; "
     "latency_kind says how each latency was obtained.", lambda f: public(f.best)),
    ("races", "Races between each budget's finalists",
     "After a per-budget search, its best trials were trained again on more seeds until the leader beat the "
     "runner-up beyond the noise (a one-sided 95% paired comparison on seeds) or the seed cap was reached. mean "
     "and spread are over each finalist's seeds (top-1 in %, or the loss where the study ranks by loss); "
     "params_pick is what picking by parameter count alone would have chosen.", lambda f: f.races),
    ("accuracy_by_groups", "Accuracy by group count",
     "The paper's Table 2 question per budget: best and median proxy top-1 for each group count tried.",
     lambda f: f.groups),
    ("complexity_table1", "Complexity of the groups and scales touched (paper Table 1 style)",
     "Widths and cost at the paper's layout (repeats 4,8,4; 224 px; 1000 classes) for every group count the "
     "study tried, at the paper's scales inside the sampled range and at each winner's scale.",
     lambda f: f.complexity),
    ("stage_costs", "Per-stage MFLOPs of the winners", "Closed-form multiply-adds per stage of each budget's winner.",
     lambda f: f.stages),
    ("latency", "Latency", "Complete trials with a latency; latency_kind says how it was obtained: measured (on the "
     "device), lut-predicted (a table of blocks measured on a device), lut-estimated (a table of emulated "
     "instruction counts on a device profile) or emulated-estimate.", lambda f: f.latency),
    ("latency_by_groups", "Latency vs MFLOPs by group count",
     "Per latency kind and group count: the time at equal MFLOPs (common_mflops, the median), from one fit per "
     "kind (log latency = a term per group count + mflops_exponent x log MFLOPs), and that against the fewest "
     "groups tried. Memory traffic is not counted in multiply-adds: where vs_fewest_groups is not 1, MFLOPs and "
     "latency disagree.", lambda f: f.latency_groups),
    ("pareto_front", "Pareto front", "Complete trials not beaten on both proxy top-1 and MFLOPs, across all studies.",
     lambda f: f.front),
    ("history", "Optimisation history", "Per study in trial order: proxy top-1, best so far, hypervolume (Pareto).",
     lambda f: f.history),
    ("trials", "All trials", "Every trial with its spec, cost and result; pruned trials were stopped early.",
     lambda f: public(f.trials)),
]  # fmt: skip

# file name (also the name of the drawing function, plots.plot_<name>), title, caption
_PLOTS = [
    ("accuracy_vs_mflops", "Accuracy vs MFLOPs",
     "Dots: complete trials coloured by group count. Black steps and rings: the Pareto front. Dashed lines: "
     "budgets, named on the top axis. Stars: paper models trained in this study. Paper models in a budget "
     "window that were not trained here have no proxy accuracy to plot: the best_per_budget table lists them."),
    ("accuracy_vs_groups", "Accuracy vs groups at each budget",
     "Does grouping the 1x1 convolutions pay at a fixed budget (the paper's Table 2)? Line: best per group count."),
    ("latency_vs_mflops", "Latency vs MFLOPs by group count",
     "Colour: group count; marker shape: how the latency was obtained (measured, LUT-predicted, LUT-estimated, "
     "emulated). Lines: the fit per group count of the latency_by_groups table. Dashed: latency budgets (named "
     "on the right axis); dotted: MFLOPs budgets (named on the top axis)."),
    ("stage_costs", "Per-stage cost of the winners",
     "Stacked bars: closed-form multiply-adds of each stage; the number is the total."),
    ("history", "Optimisation history",
     "Best proxy top-1 so far per study (dots: each complete trial); hypervolume for Pareto studies."),
    ("learning_curves", "Learning curves",
     "Proxy top-1 after each epoch, on the per-epoch evaluation subset (the number pruning decides on), one "
     "panel per budget. Grey: complete trials; thick colour: the budget's winner; red dashed ending in x: "
     "pruned trials, where they were stopped."),
    ("parameter_importance", "Parameter importance",
     "Per budget: how much each readable parameter (groups, scale, each stage's depth, the share of the budget "
     "used, shuffle) matters for reaching the budget's top trials, by PED-ANOVA (Optuna's "
     "PedAnovaImportanceEvaluator) over the complete trials; shares sum to 1. The width index the search "
     "samples (a position in the ladder of widths that fit) is left out: it means nothing to a reader. Budgets "
     "with fewer than 8 complete trials are not shown, and under ~50 trials the shares are indicative only."),
]  # fmt: skip


def _layout() -> tuple[set[str], set[str]]:
    """Every file a report may write, and its folders."""
    files = {"index.html", *(f"tables/{name}.{ext}" for name, *_ in _TABLES for ext in ("csv", "md"))}
    files |= {f"plots/{name}.{ext}" for name, *_ in _PLOTS for ext in ("png", "svg")}
    return files, {"tables", "plots"}


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def _write_report(root: Path, frames: ReportFrames, summary: list[str], title: str) -> list[Path]:
    files: list[Path] = []
    digests: dict[str, str] = {}

    def write(rel: str, data: bytes | str) -> None:
        data = data.encode() if isinstance(data, str) else data
        write_atomically(root / rel, data)
        files.append(Path(rel))
        digests[rel] = digest(data)

    table_entries = []
    for name, heading, caption, get in _TABLES:
        frame = get(frames)
        if name in ("latency", "latency_by_groups", "races") and frame.empty:
            continue
        rows = frame_rows(frame)
        write(f"tables/{name}.csv", frame.to_csv(index=False) if not rows else to_csv(spreadsheet_safe(rows)))
        text_rows = [{k: format_cell(v) for k, v in r.items()} for r in rows]
        write(f"tables/{name}.md", f"# {heading}\n\n{caption}\n\n" + (to_markdown(text_rows) or "_No rows._\n"))
        table_entries.append(TableEntry(heading, rows, f"tables/{name}.csv", f"tables/{name}.md", caption,
                                        collapsed=len(rows) > COLLAPSE_ROWS,
                                        lead=name in ("provenance", "best_per_budget")))  # fmt: skip

    plot_entries = []
    for name, heading, caption in _PLOTS:
        if name == "latency_vs_mflops" and frames.latency.empty:
            continue  # frames.notes says why
        with plots.literal_text():  # tick labels are made while saving: literal too
            figure = getattr(plots, f"plot_{name}")(frames)
            figure = getattr(figure, "figure", figure)  # plot functions return Axes; plot_history a Figure
            for fmt in ("png", "svg"):
                if fmt == "svg":
                    figure.set_layout_engine("none")  # keep the layout the PNG computed: it is the slow part
                buf = io.BytesIO()
                figure.savefig(buf, format=fmt, dpi=DPI, metadata={"Date": None} if fmt == "svg" else None)
                write(f"plots/{name}.{fmt}", buf.getvalue())
        plot_entries.append(PlotEntry(heading, f"plots/{name}.png", f"plots/{name}.svg", caption))

    generated = (f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} by {GENERATOR} {__version__}: "
                 f"{len(frames.studies)} stud{'y' if len(frames.studies) == 1 else 'ies'}, "
                 f"{len(frames.trials)} trials.")  # fmt: skip
    write("index.html", render_page(title, summary, frames.notes, plot_entries, table_entries, generated))
    write_atomically(root / MARKER, manifest(digests))
    files.append(Path(MARKER))
    return files


def summary_lines(frames: ReportFrames) -> list[str]:
    """Plain sentences: each study's progress, then each budget's winner beside the best paper model."""
    if frames.studies.empty:
        return ["No studies: nothing to report."]
    lines = []
    for s in frames.studies.itertuples():
        windows = [f"{lo:g}-{hi:g} {unit}" for lo, hi, unit in ((s.lo_mflops, s.hi_mflops, "MFLOPs"),
                   (s.lo_ms, s.hi_ms, "ms")) if pd.notna(hi)]  # fmt: skip
        window = "".join(f", {w}" for w in windows)
        lines.append(f"{s.study} ({s.mode}{window}): {s.state}; {s.complete} complete, {s.pruned} pruned, "
                     f"{s.failed} failed, {s.running} running, {s.waiting} waiting.")  # fmt: skip
    for (recipe, fidelity), grp in frames.provenance.groupby(["recipe", "fidelity"], sort=False):
        lines.append(f"Made with ({', '.join(grp.study)}): {recipe}; fidelity: {fidelity}.")
    for (study, budget), grp in frames.best.groupby(["study", "budget"], sort=False):
        win = grp[grp.kind == SEARCHED]
        paper = grp[(grp.kind == PAPER) & grp.top1_pct.notna()].sort_values("top1_pct", ascending=False)
        if win.empty:
            lines.append(f"{study} {budget}: no complete trial yet.")
            continue
        w = win.iloc[0]
        latency = f" (~{w.latency_ms:.1f} ms, {w.latency_kind})" if pd.notna(w.latency_ms) else ""
        trained = f", trained at {w.trained_px} px" if pd.notna(w.trained_px) else ""
        line = (f"{study} {budget}: best {w.label}{trained} ({w['name']}) at {w.mflops:.1f} MFLOPs{latency}, "
                f"proxy top-1 {w.top1_pct:.2f}%")  # fmt: skip
        if len(paper) and paper.iloc[0]["name"] != w["name"]:
            p = paper.iloc[0]
            line += f"; best paper model trained here: {p['name']} at {p.mflops:.1f} MFLOPs, {p.top1_pct:.2f}%"
        lines.append(line + ".")
    return lines + race_lines(frames.races) + disagreement_lines(frames.latency, frames.latency_groups)

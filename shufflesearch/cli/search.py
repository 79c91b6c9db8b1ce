"""Search commands: `search` (run a study file) and `studies list` (what is stored)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from . import render
from .app import app
from .options import AsJson, Device

StudyFile = Annotated[Path, typer.Argument(help="A study file (TOML), e.g. studies/frontier.toml.")]


@app.command()
def search(
    study_file: StudyFile,
    trials: Annotated[
        int | None, typer.Option(help="Trials per budget (default: the file's).", min=1, max=100_000)
    ] = None,
    workers: Annotated[int, typer.Option(help="Local worker processes.", min=1, max=64)] = 1,
    storage: Annotated[str | None, typer.Option(help="Storage URL, e.g. postgresql://user@db/nas.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a study that has trials (error if none).")] = False,
    device: Device = None,  # None: the study file's [accuracy] device
    as_json: AsJson = False,
) -> None:
    """Budget-constrained architecture search with Optuna (every machine may run the same command).

    Example: shufflesearch search studies/frontier.toml --trials 60 --workers 2
    """
    from .. import interrupt

    # Ctrl-C is noted from here on and acted on where it is safe: the search imports torch and optuna,
    # and a KeyboardInterrupt inside such an import can abort the process.
    with interrupt.deferred():
        _search(study_file, trials, workers, storage, resume, device, as_json)


def _search(study_file: Path, trials: int | None, workers: int, storage: str | None, resume: bool,
            device: str | None, as_json: bool):  # fmt: skip
    import dataclasses

    from ..search.results import study_finished
    from ..search.storage import check_storage_url, redact
    from ..search.study_file import load_study
    from ..search.workers import check_resumable, check_study_matches, run_search, storage_url_for

    config = load_study(study_file)
    if device is not None:  # each local worker then takes its own GPU of this kind (see search.workers)
        config = dataclasses.replace(config, device=device)
    url = check_storage_url(storage_url_for(config, storage))
    check_study_matches(config, url)  # a stored study of another mode would fail every trial
    if resume:
        check_resumable(config, url)
    wanted = trials or config.trials
    again = " ".join([f"shufflesearch search {study_file}", *([f"--trials {trials}"] if trials else []),
                      *([f"--workers {workers}"] if workers > 1 else []),
                      *([f"--storage {redact(storage)}"] if storage else []),
                      *([f"--device {device}"] if device else [])])  # fmt: skip
    if not as_json and study_finished(config, url, wanted):
        render.say(f"study {config.name} is complete ({wanted} trials per budget) in {redact(url)}; "
                   f"add trials with --trials N, or report it: shufflesearch report {study_file}")  # fmt: skip
        return
    started = time.monotonic()
    console = render.console()
    try:
        if as_json:
            summaries = run_search(config, url, trials, workers, resume)
        else:
            from rich.live import Live

            console.print(f"study {config.name} ({config.mode}) in {render.esc(redact(url))}; {workers} worker(s)")
            with Live(console=console, refresh_per_second=1, transient=False) as live:
                summaries = run_search(config, url, trials, workers, resume,
                                       on_progress=lambda s: live.update(_progress_table(s, wanted, started)))  # fmt: skip
            if not console.is_terminal:
                console.line()  # a log file gets the table's last line ended
    except KeyboardInterrupt:
        try:
            check_resumable(config, url)
        except Exception:  # stopped before the study was created (or the storage is gone): start it afresh
            render.say(f"interrupted before any trial was stored; start again with: {again}", err=True)
            raise SystemExit(130) from None
        render.say(f"interrupted: running trials are marked failed and will be retried; the study is kept in "
                   f"{redact(url)}; continue with: {again} --resume", err=True)  # fmt: skip
        raise SystemExit(130) from None
    if as_json:
        render.print_json({"study": config.name, "storage": redact(url), "studies": [s.to_dict() for s in summaries]})


def window_text(mflops, ms, budgeted) -> str:
    """'6.5-13 MFLOPs', '4-8 ms' or both: what bounds a study's trials (a latency-only study's MFLOPs range
    is the space's, not a budget)."""
    parts = [f"{w[0]:g}-{w[1]:g} {unit}" for w, unit, key in ((mflops, "MFLOPs", "mflops"), (ms, "ms", "latency_ms"))
             if key in budgeted and w]  # fmt: skip
    return ", ".join(parts) or "-"


def _progress_table(summaries, trials: int, started: float):
    rows = []
    for s in summaries:
        rows.append({
            "study": s.name, "window": window_text(s.window_mflops, s.window_latency_ms, s.budgeted),
            "candidates": s.candidates, "done": f"{s.complete + s.pruned}/{trials}", "running": s.running,
            "pruned": s.pruned, "failed": s.failed, "best top-1": render.pct(s.best_top1),
            "best spec": s.best_label or "-", "s/trial": f"{s.mean_trial_s:.1f}" if s.mean_trial_s else "-",
        })  # fmt: skip
    return render.rich_table(rows, f"Search progress ({time.monotonic() - started:.0f} s; top-1 = proxy accuracy)")


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
    from ..search.results import stored_studies

    rows, warnings = stored_studies(storage)
    for warning in warnings:
        render.say(f"warning: {warning}", err=True)
    if as_json:
        render.print_json(rows)
        return
    if not rows:
        render.console().print("no studies stored yet (run `shufflesearch search studies/demo.toml`)")
        return
    table_rows = [
        {"storage": r["storage"], "study": r["name"], "mode": r["mode"],
         "window": window_text(r["window_mflops"], r.get("window_latency_ms"), r.get("budgeted", ["mflops"])), "complete": r["complete"],
         "pruned": r["pruned"], "running": r["running"], "waiting": r["waiting"], "failed": r["failed"],
         "best top-1": render.pct(r["best_top1"]), "best spec": r["best_label"] or "-"}
        for r in rows
    ]  # fmt: skip
    render.console().print(render.rich_table(table_rows, "Stored studies (top-1 = proxy accuracy)"))

"""Search commands: `search` (run a study file) and `studies list` (what is stored)."""

from __future__ import annotations

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
    from ..search.racing import races_due

    if not as_json and study_finished(config, url, wanted) and not races_due(config, url):
        render.say(f"study {config.name} is complete ({wanted} trials per budget) in {redact(url)}; "
                   f"add trials with --trials N, or report it: shufflesearch report {study_file}")  # fmt: skip
        return
    from .. import logs
    from ..accuracy.recipe import describe_recipe

    windows = {name: window_text(mflops, config.latency_windows().get(name), config.budgeted())
               for name, mflops in config.budget_windows().items()}  # fmt: skip
    console = render.console()
    try:
        if as_json:
            summaries = run_search(config, url, trials, workers, resume)
        elif logs.quiet():  # only the final result
            last = []
            run_search(config, url, trials, workers, resume, on_progress=last.append, windows=windows)
            console.print(_progress_table(last[-1]))
        else:
            console.print(f"study {config.name} ({config.mode}) in {render.esc(redact(url))}; {workers} worker(s)")

            def say(line: str) -> None:  # a race's trainings, as they finish
                console.print(render.line(line), markup=False, highlight=False)

            # the spec labels count MFLOPs at their 224 px; say at what the proxy trains
            console.print(render.line(f"proxy top-1 on {config.dataset}: {describe_recipe(config.fidelity.to_dict())}"),
                          markup=False, highlight=False)  # fmt: skip
            for name, recipe in _scaled_recipes(config).items():
                console.print(render.line(f"  {name} trains with: {recipe}"), markup=False, highlight=False)
            for line in _resolution_lines(config):
                console.print(render.line(line), markup=False, highlight=False)
            if console.is_terminal:
                from rich.live import Live

                view = _LiveView(_epochs(config))
                with Live(console=console, refresh_per_second=1, transient=False) as live:
                    run_search(config, url, trials, workers, resume, on_progress=lambda p: live.update(view(p)),
                               windows=windows, on_race=say)  # fmt: skip
            else:  # a log file: one line per event, and the time left now and then
                lines = _PlainLines(_epochs(config))
                run_search(config, url, trials, workers, resume, on_progress=lines, windows=windows, on_race=say)
                console.print(_progress_table(lines.last))
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


ETA_EVERY_S = 60.0  # a log file's "time left" line: at the first estimate, then at most this often


def _epochs(config) -> int:
    return max(1, round(config.fidelity.epochs))  # what a trial trains (see search.workers)


def _progress_table(progress):
    rows = []
    for s in progress.summaries:
        rows.append({
            "study": s.name, "window": window_text(s.window_mflops, s.window_latency_ms, s.budgeted),
            "candidates": s.candidates, "done": f"{s.complete + s.pruned}/{progress.trials}", "running": s.running,
            "pruned": s.pruned, "failed": s.failed, "best top-1": render.pct(s.best_top1),
            "best spec": s.best_label or "-", "s/trial": f"{s.mean_trial_s:.1f}" if s.mean_trial_s else "-",
        })  # fmt: skip
    return render.rich_table(rows, f"Search progress ({_time_left(progress)}; top-1 = proxy accuracy)")


def _time_left(progress) -> str:
    """'12 s elapsed, about 40 s left' ('time left unknown' before a trial has finished)."""
    left = progress.finished < progress.wanted
    eta = ("time left unknown" if progress.eta_s is None else "finishing" if progress.eta_s < 1
           else f"about {_seconds(progress.eta_s)} left")  # fmt: skip
    return f"{_seconds(progress.elapsed_s)} elapsed" + (f", {eta}" if left else "")


def _seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    return f"{s // 60:.0f} min {s % 60:02.0f} s" if s < 3600 else f"{s // 3600:.0f} h {s % 3600 // 60:02.0f} min"


def _trial_fields(record, windows: dict[str, str], epochs: int) -> dict[str, str]:
    """One trial as a person reads it: spec, budget window, epoch reached, proxy top-1, time."""
    seconds = record["duration_s"] if record["duration_s"] is not None else record["running_s"]
    # A study that scores only at the end reports no epochs: a complete trial has trained them all.
    epoch = epochs if record["epoch"] is None and record["state"] == "complete" else record["epoch"]
    reported = record.get("intermediate") or {}  # a running or pruned trial's result: its last epoch's top-1
    top1 = record["top1"] if record["top1"] is not None else reported.get(max(reported, default=None))
    return {
        "trial": str(record["trial"]), "spec": render.line(record["label"] or "-"),
        "budget": windows.get(record["study"]) or record["study"],
        "epoch": f"{epoch}/{epochs}" if epoch is not None else "-",
        "top-1": render.pct(top1), "time": f"{seconds:.1f} s" if seconds is not None else "-",
    }  # fmt: skip


def trial_line(event, windows: dict[str, str], epochs: int) -> str:
    """A log file's line for one event, e.g. 'trial 3 finished: g3-s0.5 (budget 6.5-13 MFLOPs), epoch 1/1,
    top-1 45.21 %, 3.2 s'."""
    f = _trial_fields(event.record, windows, epochs)
    text = f"trial {f['trial']} {event.kind}: {f['spec']} (budget {f['budget']})"
    if event.kind == "started":
        return text
    text += f", epoch {f['epoch']}, top-1 {f['top-1']}, {f['time']}"
    why = event.record["status"] if event.kind != "finished" else None
    return text + (f" ({render.line(why)})" if why else "")


class _PlainLines:
    """`on_progress` for a log file: each event as a line, and the time left at most every ETA_EVERY_S."""

    def __init__(self, epochs: int) -> None:
        self.epochs, self.last, self._eta_at = epochs, None, None

    def __call__(self, progress) -> None:
        self.last = progress
        for event in progress.events:
            render.say(trial_line(event, progress.windows, self.epochs))
        due = self._eta_at is None or progress.elapsed_s - self._eta_at >= ETA_EVERY_S
        if progress.eta_s is not None and progress.finished < progress.wanted and due:
            self._eta_at = progress.elapsed_s
            render.say(f"progress: {progress.finished}/{progress.wanted} trials finished, {len(progress.running)} "
                       f"running; {_time_left(progress)}")  # fmt: skip


class _LiveView:
    """`on_progress` for a terminal: the studies table over the running and the latest finished trials."""

    SHOWN_FINISHED = 8

    def __init__(self, epochs: int) -> None:
        import collections

        self.epochs, self._ended = epochs, collections.deque(maxlen=self.SHOWN_FINISHED)

    def __call__(self, progress):
        from rich.console import Group

        self._ended.extend(e for e in progress.events if e.kind != "started")
        running = [(r, "running") for r in progress.running]
        # The latest state of each ended trial (the records are this look's), newest first.
        ended = [(e.record, e.kind) for e in reversed(self._ended)]
        rows = [{"state": state, **_trial_fields(r, progress.windows, self.epochs)} for r, state in running + ended]
        trials = render.rich_table(rows, "Trials (running, then the latest finished)") if rows else ""
        return Group(_progress_table(progress), trials)


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


def _scaled_recipes(config) -> dict[str, str]:
    """The windows a budget-scaled study trains with a recipe other than its base one."""
    from ..accuracy.recipe import describe_recipe

    return {name: describe_recipe(config.window_fidelity(name).to_dict()) for name in config.budget_windows()
            if config.window_fidelity(name) != config.fidelity}  # fmt: skip


def _resolution_lines(config) -> list[str]:
    """A warning per budget beyond its recipe's resolving power; one line if it was never measured."""
    verdicts = config.resolving_verdicts()
    lines = [f"warning: {name}: {sentence}" for name, (ok, sentence) in verdicts.items() if ok is False]
    unknown = dict.fromkeys(sentence for ok, sentence in verdicts.values() if ok is None)
    return lines + [f"resolving power: {sentence}" for sentence in unknown]

"""`shufflesearch report`: tables, plots and an offline page of a study's results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import render
from .app import app
from .options import AsJson


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
    from ..report.study import report_study
    from ..search.storage import check_storage_url
    from ..search.study_file import load_study
    from ..search.workers import storage_url_for

    config = load_study(study_file)
    result = report_study(config, check_storage_url(storage_url_for(config, storage)), study, out)
    if as_json:
        render.print_json(result.to_dict())
        return
    console = render.console()
    for note in result.notes:
        console.print(render.line(f"note: {note}"), markup=False, highlight=False)
    for summary in result.summary:
        console.print(render.line(summary), markup=False, highlight=False)
    rows = [
        {"budget": r["budget"], "kind": r["kind"], "name": r["name"], "spec": r["label"],
         "MFLOPs": r["mflops"], "params (M)": r["params_m"],
         "proxy top-1 %": r["top1_pct"] if r["top1_pct"] is not None else "-",
         "paper ImageNet top-1 %": r["paper_imagenet_top1_pct"] if r["paper_imagenet_top1_pct"] is not None else "-"}
        for r in result.tables["best_per_budget"]
    ]  # fmt: skip
    if rows:
        console.print(
            render.rich_table(rows, f"Best per budget vs the paper's models (proxy top-1 on {config.dataset})")
        )
    console.print(render.line(f"report: {result.out_dir / 'index.html'} ({len(result.files)} files)"), markup=False,
                  highlight=False)  # fmt: skip

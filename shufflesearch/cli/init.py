"""`shufflesearch init`: a new study file from a shipped template."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from ..templates import DEFAULT_TEMPLATE, template_names
from . import render
from .app import app
from .options import AsJson

Template = Literal[template_names()]  # the files shipped in shufflesearch/templates/, listed in --help


@app.command()
def init(
    name: Annotated[
        str | None, typer.Argument(help="The study's name (default: --out's stem, else the template's name).")
    ] = None,
    template: Annotated[Template, typer.Option(help="The template (the repo's studies/*.toml) to start from.")] = (
        DEFAULT_TEMPLATE
    ),
    out: Annotated[Path | None, typer.Option(help="The file to write (default: studies/NAME.toml).")] = None,
    as_json: AsJson = False,
) -> None:
    """Write a study file to start from; never overwrites one.

    Example: shufflesearch init my-frontier --template frontier

    Example: shufflesearch init --template paper-ladder --out studies/ladder.toml
    """
    from ..templates import start_study

    path = start_study(template, out, name)
    if as_json:
        render.print_json({"study_file": str(path), "template": template})
    else:
        render.say(f"wrote {path} (from template {template}); run it with: shufflesearch search {path}")

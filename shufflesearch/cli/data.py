"""`shufflesearch data get`: download a dataset into the cache, verified by SHA-256."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from . import render
from .app import app
from .options import AsJson

data_app = typer.Typer(
    help="Datasets for proxy training.\n\nExample: shufflesearch data get fashion-mnist", no_args_is_help=True
)
app.add_typer(data_app, name="data")
# download.DOWNLOADS names them (tests/test_data_get.py checks the two agree); importing it here would load torch.
Downloadable = Literal["fashion-mnist", "cifar10"]


@data_app.command("get")
def data_get(
    dataset: Annotated[Downloadable, typer.Argument(help="fashion-mnist (31 MB) or cifar10 (170 MB).")],
    mirror: Annotated[
        str | None,
        typer.Option(
            help="A base URL holding the same file names, used instead of the published ones "
            "(or set SHUFFLESEARCH_DATA_MIRROR).",
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Download a dataset from its published URLs into the cache; each file is checked by SHA-256.

    The loaders read the cached copy when no --data-dir is given (Fashion-MNIST: when Debian's
    dataset-fashion-mnist package is not installed). A run cut short resumes where it stopped.

    Example: shufflesearch data get fashion-mnist

    Example: shufflesearch data get cifar10
    """
    from ..accuracy.datasets.download import fetch_dataset

    result = fetch_dataset(dataset, mirror, progress=None if as_json else lambda m: render.say(m, err=True))
    if as_json:
        render.print_json({"dataset": result.dataset, "folder": str(result.folder), "files": result.files})
        return
    fetched = sum(f["how"] != "cached" for f in result.files)
    render.say(  # plain: a path must not be wrapped
        f"{result.dataset} ready in {result.folder} ({len(result.files)} file(s) verified by SHA-256, {fetched} downloaded)"
    )

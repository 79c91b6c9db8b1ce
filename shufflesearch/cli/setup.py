"""`shufflesearch setup`: install a cached component (the arm64 emulation sysroot)."""

from __future__ import annotations

from typing import Annotated

import typer

from . import render
from .app import app
from .options import AsJson, one_of

COMPONENTS = ("arm64",)


@app.command()
def setup(
    component: Annotated[
        str,
        one_of(
            COMPONENTS,
            "arm64: the QEMU sysroot behind --target arm64-emulated.",
            declare=typer.Argument,
            metavar="COMPONENT",
        ),
    ],
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if cached.")] = False,
    as_json: AsJson = False,
) -> None:
    """Install a cached component (about a minute, once).

    Example: shufflesearch setup arm64
    """
    from ..latency.emulated.sysroot import ensure_sysroot, sysroot_status

    ensure_sysroot(progress=None if as_json else (lambda m: render.say(m, err=True)), force=force)
    status = sysroot_status()
    if as_json:
        render.print_json(status)
    else:
        render.console().print(
            f"arm64 emulation ready in {render.esc(status.get('cache_dir'))} ({render.esc(status.get('qemu_version'))})"
        )

"""Options declared once: the spec's dozen options, the dataset options, and the value checks.

A command that describes a spec takes `spec: ShuffleNetSpec` and is decorated with
`@spec_options(...)`: the decorator puts the named options where `spec` stands in the
signature (so `--help` lists them there) and hands the command the spec they describe,
built by keyword in `build_spec`.

>>> build_spec(groups=8, scale=0.5).stage_channels
(192, 384, 768)
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..presets import get_preset
from ..spec import ShuffleNetSpec

__all__ = [
    "AsJson",
    "DataDir",
    "Dataset",
    "Device",
    "ImageSize",
    "Resolution",
    "build_spec",
    "given",
    "int_list",
    "output_file",
    "seconds",
    "seed_list",
    "spec_options",
    "ssh_option_list",
]

_INT_LIST_EXAMPLES = {"--seeds": "0,1", "--groups": "1,2,3,4,8", "--stage-channels": "240,480,960"}


# -- value checks (typer.BadParameter: a usage error naming the option, exit 2) --------
def int_list(text: str | None, name: str) -> tuple[int, ...] | None:
    """'4,8,4' -> (4, 8, 4); None stays None."""
    if text is None:
        return None
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        example = _INT_LIST_EXAMPLES.get(name, "4,8,4")
        raise typer.BadParameter(f"{name}={text!r} must be comma-separated integers, e.g. {example}") from None


def seed_list(text: str, seed_max: int) -> tuple[int, ...]:
    """--seeds: comma-separated seeds, each in [0, seed_max]."""
    seeds = int_list(text, "--seeds")
    bad = [s for s in seeds if not 0 <= s <= seed_max]
    if bad:
        raise typer.BadParameter(f"--seeds: {bad[0]} must be in [0, {seed_max}], e.g. 0,1")
    return seeds


def ssh_option_list(text: str) -> list[str]:
    """--ssh-options split as a shell would split it (nothing is run): an unclosed quote is a usage error."""
    import shlex

    try:
        return shlex.split(text)
    except ValueError as exc:
        raise typer.BadParameter(f"--ssh-options={text!r}: {exc}; e.g. '-i ~/.ssh/pi -p 2222'") from None


def seconds(value: float, name: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{name}={value!r} must be a positive number of seconds, e.g. 300")
    return value


def output_file(path: Path) -> Path:
    """An --out file: new, or a regular file to replace (never a folder, a device such as /dev/null, a pipe)."""
    if path.exists() and not path.is_file():
        raise typer.BadParameter(f"--out {str(path)!r} exists and is not a regular file; choose a file name")
    return path


def given(**values: Any) -> dict[str, Any]:
    """The options a person gave (not None): the library's own defaults fill in the rest."""
    return {k: v for k, v in values.items() if v is not None}


# -- the spec's options ---------------------------------------------------------------
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

# option name -> its declaration; the order is the order of `--help`
SPEC_OPTIONS: dict[str, Any] = {
    "preset": Preset,
    "groups": Groups,
    "scale": Scale,
    "repeats": Repeats,
    "resolution": Resolution,
    "classes": Classes,
    "stage_channels": StageChannels,
    "stem_channels": StemChannels,
    "bottleneck": Bottleneck,
    "stem": Stem,
    "in_channels": InChannels,
    "shuffle": Shuffle,
}


def build_spec(
    *,
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
    """The spec the options describe: a preset (or the default) with the given options overriding it."""
    base = get_preset(preset) if preset is not None else ShuffleNetSpec()  # '' is an unknown preset, not none
    changes = given(
        groups=groups,
        scale=scale,
        repeats=int_list(repeats, "--repeats"),
        resolution=resolution,
        num_classes=classes,
        stage_channels=int_list(stage_channels, "--stage-channels"),
        stem_channels=stem_channels,
        bottleneck_ratio=bottleneck,
        stem=stem,
        in_channels=in_channels,
        shuffle=shuffle,
    )
    return base.replace(**changes)


def spec_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the spec options `names` (all twelve if none) in place of its `spec` parameter."""
    names = names or tuple(SPEC_OPTIONS)
    unknown = set(names) - set(SPEC_OPTIONS)
    if unknown:
        raise TypeError(f"no spec option {sorted(unknown)}; known: {list(SPEC_OPTIONS)}")

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(command, eval_str=True).parameters
        if "spec" not in own:
            raise TypeError(f"{command.__name__} takes no `spec` parameter")
        params = []
        for name, param in own.items():
            if name == "spec":
                params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None,
                                             annotation=SPEC_OPTIONS[n]) for n in names]  # fmt: skip
            else:
                params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY))

        @functools.wraps(command)
        def run(**values: Any) -> Any:
            spec = build_spec(**{n: values.pop(n) for n in names})
            return command(spec=spec, **values)

        run.__signature__ = inspect.Signature(params)  # what typer reads
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run

    return decorate


# -- other shared options -------------------------------------------------------------
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
Device = Annotated[
    str, typer.Option(help="auto (a GPU if there is one), cpu, cuda, cuda:N or mps; checked before any work.")
]
Dataset = Annotated[str, typer.Option(help="fashion-mnist (default), cifar10 or imagefolder.")]
DataDir = Annotated[
    Path | None, typer.Option(help="Folder with the dataset files (IDX, cifar-10-batches-py, class folders).")
]
ImageSize = Annotated[int | None, typer.Option(help="Resize images to this many px (required for imagefolder).")]
Python = Annotated[str, typer.Option(help="Python on the SSH device.")]

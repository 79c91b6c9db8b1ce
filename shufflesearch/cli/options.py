"""Options declared once: the spec's dozen options, the dataset options, and the value checks.

A command that describes a spec takes `spec: ShuffleNetSpec` and is decorated with
`@spec_options(...)`: the decorator puts the named options where `spec` stands in the
signature (so `--help` lists them there) and hands the command the spec they describe,
built by keyword in `build_spec`.

>>> build_spec(groups=8, scale=0.5).stage_channels
(192, 384, 768)
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from ..accuracy.recipe import DATASETS
from ..presets import get_preset, list_presets
from ..spec import GROUP_CHOICES, STEM_KINDS, ShuffleNetSpec

__all__ = [
    "AsJson",
    "DataDir",
    "Dataset",
    "Device",
    "ImageSize",
    "Resolution",
    "build_spec",
    "default_text",
    "given",
    "int_list",
    "library_default",
    "one_of",
    "output_file",
    "preset_names",
    "seconds",
    "seed_list",
    "spec_options",
    "ssh_option_list",
    "suggesting",
    "with_default",
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


# -- what --help shows: the default the library uses, and the choices ---------------------
def default_text(value: Any) -> str:
    """A default as a person types it: (4, 8, 4) -> '4,8,4', None -> 'none'."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def with_default(help: str, value: Any) -> str:
    """`help` ending in the default an option left out gets from the library (the option itself is None then,
    so the library's own default applies and --help cannot drift from it: the value comes from the library)."""
    return f"{help}  [default: {default_text(value)}]"


def library_default(function: Callable[..., Any], name: str) -> Any:
    """The default `function` gives its parameter `name`: what an option left out (None) ends up as."""
    return inspect.signature(function).parameters[name].default


def _not_one_of(value: str, choices: Sequence[str]) -> str:
    near = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
    return f"{value!r} is not one of {', '.join(choices)}" + (f"; did you mean {near[0]}?" if near else "")


def _completer(choices: Sequence[str] | Callable[[], Sequence[str]]) -> Callable[[str], list[str]]:
    def complete(incomplete: str) -> list[str]:
        return [c for c in (choices() if callable(choices) else choices) if c.startswith(incomplete)]

    return complete


def one_of(choices: Sequence[str], help: str, declare: Callable[..., Any] = typer.Option, **option: Any) -> Any:
    """A typer.Option (or `declare=typer.Argument`) taking one of `choices`: listed in --help, completed by the
    shell, anything else a usage error in one line (exit 2)."""

    def parse(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(_not_one_of(value, choices))
        return value

    option.setdefault("metavar", f"<{'|'.join(choices)}>")
    return declare(help=help, parser=parse, autocompletion=_completer(choices), **option)


def suggesting(choices: Sequence[str] | Callable[[], Sequence[str]], help: str, **option: Any) -> Any:
    """A typer.Option whose fixed values the shell completes, that also takes free-form ones (an ssh:// URL, a
    file, cuda:1); the library checks what it is given."""
    return typer.Option(help=help, autocompletion=_completer(choices), **option)


def preset_names() -> list[str]:
    return sorted(list_presets())


# -- the spec's options ---------------------------------------------------------------
_SPEC = ShuffleNetSpec()  # what an option left out gets (see build_spec)
Preset = Annotated[
    str | None,
    suggesting(preset_names, "Named variant (see `shufflesearch models`); other options override it.",
               metavar="<name>"),
]  # fmt: skip
Groups = Annotated[
    int | None,
    suggesting([str(g) for g in GROUP_CHOICES],
               with_default(f"Groups of the pointwise convs: {', '.join(map(str, GROUP_CHOICES))}.", _SPEC.groups)),
]  # fmt: skip
Scale = Annotated[float | None, typer.Option(help=with_default("Width multiplier s ('ShuffleNet s x').", _SPEC.scale))]
Repeats = Annotated[str | None, typer.Option(help=with_default("Units per stage (Stage2,3,4).", _SPEC.repeats))]
Resolution = Annotated[int | None, typer.Option(help=with_default("Input height = width in px.", _SPEC.resolution))]
Classes = Annotated[int | None, typer.Option("--classes", help=with_default("Number of classes.", _SPEC.num_classes))]
StageChannels = Annotated[str | None, typer.Option(help="Explicit Stage2,3,4 widths instead of the width rule.")]
StemChannels = Annotated[int | None, typer.Option(help="Explicit stem width instead of the width rule.")]
Bottleneck = Annotated[
    float | None, typer.Option(help=with_default("Bottleneck width / output width.", _SPEC.bottleneck_ratio))
]
Stem = Annotated[
    str | None,
    one_of(STEM_KINDS, with_default("imagenet: stride-2 conv + max pool; small: for 28-64 px images.", _SPEC.stem)),
]
InChannels = Annotated[
    int | None, typer.Option(help=with_default("Input channels (1 for grayscale).", _SPEC.in_channels))
]
Shuffle = Annotated[
    bool | None,
    typer.Option("--shuffle/--no-shuffle",
                 help=with_default("Channel shuffle (the paper's ablation).", "--shuffle" if _SPEC.shuffle else "--no-shuffle")),
]  # fmt: skip

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
# DEVICE_NAMES of accuracy.devices, which imports torch: tests/test_help_truth.py checks they agree.
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
Workers = Annotated[int, typer.Option(help="Models trained at once (one thread each).", min=1)]
Device = Annotated[
    str,
    suggesting([d for d in DEVICES if d != "cuda:N"], f"{', '.join(DEVICES)}; auto: a GPU if there is one. Checked "
               "before any work.", metavar="<device>"),
]  # fmt: skip
Dataset = Annotated[str, one_of(DATASETS, "The data to train and test on (imagefolder: --data-dir of class folders).")]
DataDir = Annotated[
    Path | None, typer.Option(help="Folder with the dataset files (IDX, cifar-10-batches-py, class folders).")
]
ImageSize = Annotated[int | None, typer.Option(help="Resize images to this many px (required for imagefolder).")]
Python = Annotated[str, typer.Option(help="Python on the SSH device.")]
TARGETS = ("local", "arm64-emulated", "ssh://")  # ssh://user@host[:port]: the shell completes the scheme

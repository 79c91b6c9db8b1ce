"""`report` against what a shared storage and a user's folder may hold (issue 17), through the real `main`.

Three classes, each with its neighbours: text from a study reaching matplotlib (mathtext `$\\frac{$` raised, a
matplotlibrc could hand labels to TeX), Markdown tables carrying HTML or breaking their columns, and a rebuild
deleting files the user had put in the report folder.
"""

from __future__ import annotations

import errno
import hashlib
import html
import io
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shufflesearch.cli import main
from shufflesearch.report import build, plots
from shufflesearch.report.folder import MARKER
from shufflesearch.report.tables import to_markdown
from shufflesearch.report.text import encodable, figure_text, markdown_cell, visible

STUDY = '[study]\nname = "tiny"\ntrials = 2\n[budget]\nmflops = [13]\n[space]\ngroups = [3, 8]\nscale = [0.1, 0.5]\n'
OUT = "reports/r"
# What matplotlib, TeX, Markdown, HTML or a terminal would read as their own, and text no output can hold.
HOSTILE = {
    "fraction": "$\\frac{$", "math": "$x^2$", "two dollars": "$$", "escaped dollar": "\\$5 $", "dollar": "$",
    "tex": "\\input{/etc/passwd}", "newline": "a\nb", "nul": "a\x00b", "bidi": "abc\u202edef", "escape": "\x1b[2J",
    "surrogate": "a\udcffb", "emoji": "😀 猫", "long": "x" * 5000, "html": "<img src=x onerror=alert(1)>&amp;",
    "pipes": "| a | b |", "code": "`x` ``y``", "link": "[a](javascript:alert(1)) ![i](x.png)", "emphasis": "*a* _b_ ~c~",
}  # fmt: skip


def run(argv: list[str]) -> tuple[int, str, str]:
    """The CLI in-process, with a real process's strict UTF-8 stdout."""
    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", errors="strict", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace", write_through=True)
    with redirect_stdout(stdout), redirect_stderr(stderr):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
    return code, out.getvalue().decode(), err.getvalue().decode()


def store(root: Path, text: str = "g3 x0.25", dataset: str = "fashion-mnist", kind: str | None = None,
          latency: bool = True) -> None:  # fmt: skip
    """tiny-13M in a real SQLite file: the winner's label (and preset, worker, status) is `text`, its latency kind
    `kind` (default: `text`)."""
    import optuna

    from shufflesearch.search.results import _reader
    from shufflesearch.search.storage import open_storage

    _reader.cache_clear()  # one engine per process in real life: not the last test's
    (root / "tiny.db").unlink(missing_ok=True)
    storage = open_storage(f"sqlite:///{root / 'tiny.db'}")
    study = optuna.create_study(study_name="tiny-13M", storage=storage, direction="maximize")
    for key, value in {"window_mflops": [6.5, 13.0], "mode": "per-budget", "dataset": dataset}.items():
        study.set_user_attr(key, value)
    for i, top1 in enumerate((0.8, 0.6)):
        attrs = {"label": text if i == 0 else "g8 x0.1", "preset": text, "worker": text, "status": text,
                 "mflops": 12.0 - i, "params": 1000, "top1": top1, "spec": {"groups": 3, "scale": 0.25}}  # fmt: skip
        if latency:
            attrs |= {"latency_ms": 3.0 + i, "latency_kind": text if kind is None else kind}
        study.add_trial(optuna.trial.create_trial(value=top1, user_attrs=attrs))
    storage.engine.dispose()


@pytest.fixture()
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(build, "DPI", 20)  # the same drawing, fewer pixels
    (tmp_path / "tiny.toml").write_text(STUDY)
    return tmp_path


def report(*extra: str) -> tuple[int, str, str]:
    return run(["report", "tiny.toml", "--storage", "sqlite:///tiny.db", "--out", OUT, *extra])


def snapshot(root: Path) -> dict[str, bytes | str]:
    return {
        str(p.relative_to(root)): f"-> {os.readlink(p)}" if p.is_symlink() else p.read_bytes() if p.is_file() else "dir"
        for p in root.rglob("*")
    }  # fmt: skip


# -- 1. text on figures -------------------------------------------------------------------------------
def _svg_text(path: Path) -> str:
    """The text an SVG written with svg.fonttype 'none' shows (mathtext would have split it into glyphs)."""
    return "\n".join("".join(e.itertext()) for e in ET.parse(path).iter() if e.tag.endswith("text"))


NAMES = list(HOSTILE)
TRIPLES = [NAMES[i::6] for i in range(6)]  # each text once as a label, once as a dataset, once as a latency kind


@pytest.mark.parametrize("names", TRIPLES, ids="+".join)
def test_stored_text_is_drawn_literally_and_never_raises(here, names):
    """A label, a latency kind and a dataset name reach the figures, as typed; a matplotlibrc asking for TeX (not
    installed here: it would raise) changes nothing."""
    import matplotlib

    label, dataset, kind = (HOSTILE[n] for n in names)
    store(here, label, dataset=dataset, kind=kind)
    with matplotlib.rc_context({"svg.fonttype": "none", "text.usetex": True}):
        code, out, err = report()
    assert (code, err) == (0, ""), err  # no traceback, no warning per missing glyph

    def shown(text: str) -> str:
        return figure_text(encodable(text))  # a lone surrogate is U+FFFD in every output

    assert shown(label) in _svg_text(here / OUT / "plots" / "stage_costs.svg")  # the winner's bar
    assert shown(dataset) in _svg_text(here / OUT / "plots" / "accuracy_vs_mflops.svg")  # the y axis label
    assert shown(kind) in _svg_text(here / OUT / "plots" / "latency_vs_mflops.svg")  # a legend entry
    assert "\x1b" not in out and "\u202e" not in out  # the terminal gets escapes, not control characters


def test_figure_text_is_visible_and_short():
    assert figure_text("$\\frac{$") == "$\\frac{$"  # unchanged: drawn literally inside literal_text
    assert figure_text("a\nb\x00\u202e\udcff") == "a\\nb\\x00\\u202e\\udcff"
    assert len(figure_text("x" * 5000)) == 60 and figure_text("x" * 5000).endswith("…")
    assert visible("é 猫 😀 a b") == "é 猫 😀 a b"


def test_a_plot_drawn_outside_a_report_is_literal_too(here):
    """A notebook calls plot_* and saves inside literal_text: the same text, drawn the same way."""
    from shufflesearch.report.frames import build_frames

    name = "s-13M"
    rec = {"study": name, "trial": 0, "state": "complete", "groups": 3, "mflops": 12.0, "top1": 0.8,
           "label": HOSTILE["fraction"], "spec": {"groups": 3, "scale": 0.25}}  # fmt: skip
    frames = build_frames({name: [rec]}, {name: {"window_mflops": [6, 13], "dataset": "$\\frac{$"}})
    for plot, *_ in build._PLOTS:
        if plot == "latency_vs_mflops":
            continue
        figure = getattr(plots, f"plot_{plot}")(frames)
        with plots.literal_text():
            getattr(figure, "figure", figure).savefig(io.BytesIO(), format="png", dpi=20)


# -- 2. Markdown tables -------------------------------------------------------------------------------
def _md_table(text: str) -> list[list[str]]:
    """Cells of the one table in `text`, as CommonMark + GFM tables render them (markdown-it, which rich uses)."""
    from markdown_it import MarkdownIt

    rendered = MarkdownIt("commonmark").enable("table").render(text)
    tags = set(re.findall(r"<(\w+)", rendered))
    assert tags <= {"h1", "p", "table", "thead", "tbody", "tr", "th", "td"}, (tags, rendered)
    rows = re.findall(r"<tr>(.*?)</tr>", rendered, re.S)
    return [[html.unescape(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)] for r in rows]


def test_report_markdown_shows_stored_text_as_text(here):
    stored = HOSTILE["html"] + HOSTILE["pipes"] + HOSTILE["link"] + HOSTILE["code"] + "\n" + HOSTILE["emphasis"]
    store(here, stored)
    code, _, err = report()
    assert code == 0, err
    for md in (here / OUT / "tables").glob("*.md"):
        text = md.read_text()
        assert "<" not in text, md.name
        if "_No rows._" in text:
            continue
        rows = _md_table(text)
        assert len({len(r) for r in rows}) == 1, md.name  # no cell broke into columns
    rows = _md_table((here / OUT / "tables" / "trials.md").read_text())
    label = rows[0].index("label")
    assert visible(stored) in [r[label] for r in rows[1:]]  # the whole label, as text, in its own column


@given(st.lists(st.text(max_size=12), min_size=1, max_size=4))
def test_any_cell_renders_as_its_own_text(cells):
    """Property: whatever a cell holds, CommonMark shows exactly its text (`visible`), in its own column."""
    rows = [{f"c{i}": c for i, c in enumerate(cells)}]
    table = _md_table(to_markdown(rows))
    assert table[1] == [visible(c).strip(" \t") for c in cells]


def test_table_out_md_goes_through_the_same_cells(here):
    code, _, err = run(["table", "--groups", "3,8", "--scales", "0.5", "--out", "t.md"])
    assert code == 0, err
    rows = _md_table((here / "t.md").read_text())
    assert len(rows) == 3 and len({len(r) for r in rows}) == 1 and "groups" in rows[0]
    assert markdown_cell("a_b _c_ *d*") == "a_b \\_c\\_ \\*d\\*"  # names stay readable; emphasis cannot open


# -- 3. the report folder ---------------------------------------------------------------------------
def _user_files(folder: Path) -> None:
    (folder / "notes.txt").write_text("the user's")
    (folder / "drafts" / "empty").mkdir(parents=True)
    (folder / "drafts" / "a.md").write_text("draft")
    (folder / "plots" / "mine.png").write_bytes(b"mine")
    (folder / "tables" / "extra.csv").write_text("a\n1\n")
    (folder / "link").symlink_to("notes.txt")
    os.mkfifo(folder / "pipe")
    os.chmod(folder / "notes.txt", 0o600)


USER = ["notes.txt", "drafts", "drafts/empty", "drafts/a.md", "plots/mine.png", "tables/extra.csv", "link", "pipe"]


def test_a_rebuild_keeps_every_file_the_report_did_not_write(here):
    store(here)
    assert report()[0] == 0
    folder = here / OUT
    _user_files(folder)
    inode = (folder / "notes.txt").stat().st_ino
    store(here, latency=False)  # the new report has no latency plot: the old one was the report's, and goes
    code, _, err = report()
    assert code == 0, err
    assert all(os.path.lexists(folder / p) for p in USER)
    assert (folder / "notes.txt").read_text() == "the user's" and (folder / "notes.txt").stat().st_ino == inode
    assert (folder / "notes.txt").stat().st_mode & 0o777 == 0o600 and os.readlink(folder / "link") == "notes.txt"
    assert (folder / "drafts" / "a.md").read_text() == "draft"
    assert (folder / "plots" / "mine.png").read_bytes() == b"mine"
    assert not (folder / "plots" / "latency_vs_mflops.png").exists() and (folder / "plots" / "history.png").exists()
    assert sorted(p.name for p in (here / "reports").iterdir()) == ["r"]  # no old or temporary folder left
    listed = (folder / MARKER).read_text().splitlines()[1:]
    assert all(hashlib.sha256((folder / r).read_bytes()).hexdigest() == s for s, r in (x.split("  ") for x in listed))
    assert not {p for p in USER if any(line.endswith("  " + p) for line in listed)}  # never listed as the report's
    if shutil.which("sha256sum"):  # the marker is sha256sum's own format
        subprocess.run(["sha256sum", "--quiet", "-c", MARKER], cwd=folder, check=True, capture_output=True)


@pytest.mark.parametrize("how", ["edited", "in the way", "folder in the way", "file for a folder"])
def test_a_rebuild_refuses_to_replace_what_the_user_changed(here, how):
    store(here)
    assert report()[0] == 0
    folder = here / OUT
    if how == "edited":
        (folder / "index.html").write_text("my notes on the report")
    elif how == "in the way":  # the report did not write it last time, but writes it now
        store(here, latency=False)
        assert report()[0] == 0
        (folder / "tables" / "latency.csv").write_text("mine")
        store(here)
    elif how == "folder in the way":
        (folder / "index.html").unlink()
        (folder / "index.html").mkdir()
        (folder / "index.html" / "mine.txt").write_text("mine")
    else:
        shutil.rmtree(folder / "tables")
        (folder / "tables").write_text("mine")
    before = snapshot(here / "reports")
    code, _, err = report()
    assert code == 2 and err.startswith("error: --out reports/r: ") and err.count("\n") == 1, err
    assert "move it out of the folder" in err
    assert snapshot(here / "reports") == before


def test_a_failed_rebuild_keeps_the_report_and_the_users_files(here, monkeypatch):
    store(here)
    assert report()[0] == 0
    _user_files(here / OUT)
    before = snapshot(here / "reports")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(plots, "plot_history", full)  # the last plot: the new folder is nearly complete
    code, _, err = report()
    assert code == 1 and "No space left on device" in err and err.count("\n") == 1, err
    assert snapshot(here / "reports") == before


def test_files_that_cannot_be_linked_are_copied_or_refused(here, monkeypatch):
    """Hard links fail across filesystems and for protected files: a file is copied, a FIFO is never read."""
    store(here)
    assert report()[0] == 0
    (here / OUT / "notes.txt").write_text("the user's")

    def no_links(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    assert report()[0] == 0 and (here / OUT / "notes.txt").read_text() == "the user's"
    os.mkfifo(here / OUT / "pipe")
    before = snapshot(here / "reports")
    code, _, err = report()
    assert code == 2 and "cannot keep pipe" in err and snapshot(here / "reports") == before, err


def test_an_old_marker_or_a_hostile_one_deletes_nothing_of_the_users(here):
    """A report from before markers listed files: its own files are replaced, the rest kept. A marker listing the
    user's file with its real digest still cannot make it the report's: only a report's own paths are."""
    store(here)
    assert report()[0] == 0
    folder = here / OUT
    (folder / MARKER).write_text("Written by `shufflesearch report`; the next report to this folder replaces it.\n")
    (folder / "notes.txt").write_text("the user's")
    (folder / "index.html").write_text("edited, but an old report cannot tell")
    assert report()[0] == 0
    assert (folder / "notes.txt").read_text() == "the user's" and "</html>" in (folder / "index.html").read_text()
    digest = hashlib.sha256(b"the user's").hexdigest()
    with (folder / MARKER).open("a") as marker:
        marker.write(f"{digest}  notes.txt\n{digest}  ../outside.txt\n")
    (here / "reports" / "outside.txt").write_text("the user's")
    assert report()[0] == 0
    assert (folder / "notes.txt").read_text() == "the user's" and (here / "reports" / "outside.txt").exists()


def test_a_folder_that_is_no_report_is_still_refused(here):
    store(here)
    (here / OUT).mkdir(parents=True)
    (here / OUT / "thesis.tex").write_text("precious")
    code, _, err = report()
    assert code == 2 and "not a shufflesearch report" in err and (here / OUT / "thesis.tex").read_text() == "precious"
    assert sorted(p.name for p in (here / OUT).iterdir()) == ["thesis.tex"]

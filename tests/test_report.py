"""Reports: records -> DataFrames (checked against independent computations), then the folder on disk."""

import html.parser
import os
import random
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from shufflesearch.complexity import count_complexity
from shufflesearch.paper import TABLE2_TOP1_ERROR_PCT
from shufflesearch.presets import list_presets
from shufflesearch.report import plots
from shufflesearch.report.build import MARKER, ReportError, build_report
from shufflesearch.report.frames import PAPER, SEARCHED, build_frames
from shufflesearch.report.history import hypervolume
from shufflesearch.spec import ShuffleNetSpec

IN_CI = os.environ.get("CI") == "true"
NASTY = '<script>alert(1)</script>&"x" $(rm -rf ~); `id`'


def rec(study, trial, state="complete", groups=3, scale=0.5, repeats=(4, 8, 4), top1=0.8, **extra):
    """A record as `trial_record` writes it, with the cost counted for real."""
    spec = ShuffleNetSpec(groups=groups, scale=scale, repeats=repeats)
    cost = count_complexity(spec)
    done = state == "complete"
    return {
        "study": study, "trial": trial, "state": state, "label": spec.label, "preset": None, "groups": groups,
        "mflops": cost.mflops, "params": cost.params, "top1": top1 if done else None, "latency_ms": None,
        "latency_kind": None, "train_seconds": 3.0, "duration_s": 4.0, "status": "ok" if done else None,
        "retry_of": None, "worker": "host:1", "spec": spec.to_dict(), "curve": [], **extra,
    }  # fmt: skip


def per_budget(name="ladder", budget=40.0, lo=20.0):
    return f"{name}-{budget:g}M", {"mode": "per-budget", "window_mflops": [lo, budget], "candidates": 99}


def random_studies(seed=0, n=60):
    """Two per-budget studies of random specs inside their windows."""
    rng = random.Random(seed)
    records, attrs = {}, {}
    for budget in (13.0, 40.0):
        name, attr = per_budget(budget=budget, lo=budget / 2)
        attrs[name], records[name] = attr, []
        while len(records[name]) < n:
            spec = ShuffleNetSpec(groups=rng.choice((1, 2, 3, 4, 8)), scale=round(rng.uniform(0.1, 0.8), 2),
                                  repeats=(rng.randint(2, 5), rng.randint(4, 9), rng.randint(2, 5)))  # fmt: skip
            if budget / 2 <= count_complexity(spec).mflops <= budget:
                state = rng.choice(["complete"] * 6 + ["pruned", "fail"])
                records[name].append(rec(name, len(records[name]), state, spec.groups, spec.scale, spec.repeats,
                                         top1=round(rng.uniform(0.5, 0.9), 4)))  # fmt: skip
    return records, attrs


# -- frames -----------------------------------------------------------------------------
def test_trials_frame_spells_out_specs_with_units():
    name, attrs = per_budget()
    records = [rec(name, 0, top1=0.8123, latency_ms=12.3456, latency_kind="measured"), rec(name, 1, "fail")]
    records[1].update(spec=None, mflops=None, params=None, label=None)  # failed before the spec was set
    t = build_frames({name: records}, {name: attrs}).trials
    assert {"mflops", "params_m", "top1_pct", "latency_ms", "budget_mflops"} <= set(t.columns)
    row = t.iloc[0]
    assert row.top1_pct == pytest.approx(81.23) and row.latency_ms == pytest.approx(12.346)
    assert row.params_m == pytest.approx(records[0]["params"] / 1e6, abs=1e-4)
    assert (row.groups, row.scale, row.repeats, row.budget_mflops) == (3, 0.5, "4,8,4", 40.0)
    assert t.iloc[1].state == "fail" and t.iloc[1].mflops != t.iloc[1].mflops  # NaN: a row, not a crash


def test_best_per_budget_is_the_top_trial_beside_every_paper_model_in_the_window():
    records, attrs = random_studies()
    name = "ladder-40M"
    g3 = list_presets()["shufflenet_v1_x0_5_g3"]  # 37.6 MFLOPs: queued by the search, trained here
    records[name].append(rec(name, 999, groups=3, scale=0.5, top1=0.55))
    frames = build_frames(records, attrs)
    best = frames.best[frames.best.study == name]
    done = [r for r in records[name] if r["state"] == "complete"]
    top = max(done, key=lambda r: r["top1"])
    searched = best[best.kind == SEARCHED].iloc[0]
    assert searched.top1_pct == pytest.approx(100 * top["top1"]) and searched.trial == top["trial"]

    # Paper models: presets plus Table 2 specs, counted independently, inside (20, 40].
    specs = {*list_presets().values(), *(ShuffleNetSpec(groups=g, scale=s) for g, s in TABLE2_TOP1_ERROR_PCT)}
    expected = {s.label for s in specs if 20 < count_complexity(s).mflops <= 40}
    papers = best[best.kind == PAPER]
    assert set(papers.label) == expected and len(expected) >= 4
    trained = papers[papers.label == g3.label].iloc[0]
    assert trained.top1_pct == pytest.approx(55.0)  # matched by spec, not by name
    assert trained.paper_imagenet_top1_pct == pytest.approx(100 - TABLE2_TOP1_ERROR_PCT[(3, 0.5)])
    assert papers[papers.label != g3.label].top1_pct.isna().all()


def test_pareto_front_matches_the_search_layers_and_brute_force():
    from shufflesearch.search.standing import pareto_front

    records, attrs = random_studies(seed=3)
    frames = build_frames(records, attrs)
    done = [r for recs in records.values() for r in recs if r["state"] == "complete"]
    ours = {(r.study, r.trial) for r in frames.front.itertuples()}
    assert ours == {(r["study"], r["trial"]) for r in pareto_front(done)}
    points = [(r["mflops"], r["top1"]) for r in done]
    for r in done:
        if points.count((r["mflops"], r["top1"])) > 1:
            continue  # exact twins: only one of them is kept, either is right
        beaten = any(m <= r["mflops"] and a >= r["top1"] and (m, a) != (r["mflops"], r["top1"]) for m, a in points)
        assert ((r["study"], r["trial"]) in ours) == (not beaten)


def test_hypervolume_against_a_grid_count():
    assert hypervolume([(10.0, 50.0)], 20.0) == pytest.approx(0.25)
    assert hypervolume([(30.0, 90.0)], 20.0) == 0.0  # outside the reference box
    rng = random.Random(1)
    points = [(rng.uniform(0, 100), rng.uniform(0, 100)) for _ in range(12)]
    n = 200  # cell centres of an n x n grid over [0, 100 MFLOPs] x [0, 100 %]
    centres = [(i + 0.5) * 100 / n for i in range(n)]
    dominated = sum(any(m <= x and a >= y for m, a in points) for x in centres for y in centres)
    assert hypervolume(points, 100.0) == pytest.approx(dominated / n**2, abs=0.01)


def test_pareto_study_is_binned_at_the_papers_budgets_and_tracks_hypervolume():
    attrs = {"front": {"mode": "pareto", "window_mflops": [10, 150]}}
    records = [rec("front", 0, scale=0.25, top1=0.6), rec("front", 1, scale=0.5, top1=0.7),
               rec("front", 2, scale=1.0, top1=0.65), rec("front", 3, scale=1.0, top1=0.8)]  # fmt: skip
    frames = build_frames({"front": records}, attrs)
    assert list(frames.budgets.budget_mflops) == [13.0, 38.0, 140.0, 150.0]
    expected = [13.0 if r["mflops"] <= 13 else 38.0 if r["mflops"] <= 38 else 140.0 for r in records]
    assert list(frames.trials.budget_mflops) == expected
    hv = list(frames.history.hypervolume)
    assert hv == sorted(hv) and hv[2] == hv[1] < hv[3]  # trial 2 is dominated: no gain
    assert hv[-1] == pytest.approx(hypervolume([(r["mflops"], 100 * r["top1"]) for r in records], 150.0), abs=1e-5)


def test_groups_table_and_stage_costs_follow_the_records():
    records, attrs = random_studies(seed=5)
    frames = build_frames(records, attrs)
    for row in frames.groups.itertuples():
        tops = [r["top1"] for r in records[row.study] if r["state"] == "complete" and r["groups"] == row.groups]
        assert row.best_top1_pct == pytest.approx(100 * max(tops)) and row.trials == len(tops)
    assert len(frames.stages) == 2
    for row in frames.stages.itertuples():
        parts = row.stem_mflops + row.stage2_mflops + row.stage3_mflops + row.stage4_mflops + row.head_mflops
        assert parts == pytest.approx(row.mflops, abs=0.01)
        winner = frames.best[(frames.best.study == row.study) & (frames.best.kind == SEARCHED)].iloc[0]
        assert row.mflops == pytest.approx(winner.mflops, abs=1e-3)


def test_complexity_table_covers_the_groups_and_scales_touched():
    records, attrs = random_studies(seed=7)
    frames = build_frames(records, attrs)
    touched = {r["groups"] for recs in records.values() for r in recs}
    table = frames.complexity
    assert set(table.groups) == touched
    assert {0.25, 0.5} <= set(table.scale) and 1.0 not in set(table.scale)  # sampled scales stop at 0.8
    for row in table.sample(5, random_state=0).itertuples():
        assert row.mflops == pytest.approx(count_complexity(ShuffleNetSpec(groups=row.groups, scale=row.scale)).mflops,
                                           abs=1e-3)  # fmt: skip


def test_summary_agrees_with_the_search_layers_summary():
    from shufflesearch.search.results import summarize_records

    records, attrs = random_studies(seed=9)
    frames = build_frames(records, attrs)
    for name in records:
        s = summarize_records(name, attrs[name], records[name])
        row = frames.studies[frames.studies.study == name].iloc[0]
        assert (row.complete, row.pruned, row.failed, row.running) == (s.complete, s.pruned, s.failed, s.running)
        best = frames.best[(frames.best.study == name) & (frames.best.kind == SEARCHED)].iloc[0]
        assert best.top1_pct == pytest.approx(100 * s.best_top1) and best.label == s.best_label


# -- the folder -------------------------------------------------------------------------
class _Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.imgs, self.text, self.ids, self.links = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.ids += [v for k, v in attrs if k == "id"]
        self.links += [v for k, v in attrs if k == "href"]
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def _parse(page):
    parser = _Tags()
    parser.feed(page)
    return parser


def test_report_folder_has_valid_tables_plots_and_an_offline_page(tmp_path):
    records, attrs = random_studies(seed=11)
    nasty = f"{NASTY}-40M"
    records[nasty] = [{**r, "study": nasty, "latency_ms": r["mflops"] / 3, "latency_kind": "lut-predicted"}
                      for r in records.pop("ladder-40M")]  # fmt: skip
    attrs[nasty] = attrs.pop("ladder-40M")
    result = build_report(records, attrs, tmp_path / "out", title=f"report {NASTY}")
    out = result.out_dir
    assert set(map(str, result.files)) >= {"index.html", "tables/trials.csv", "tables/trials.md",
                                           "plots/latency_vs_mflops.svg", "plots/accuracy_vs_groups.png"}  # fmt: skip
    assert all((out / f).is_file() for f in result.files)
    for png in out.glob("plots/*.png"):
        with Image.open(png) as im:
            assert im.format == "PNG" and im.width >= 600 and len(im.convert("L").getcolors(256) or []) > 20
    for svg in out.glob("plots/*.svg"):
        assert ET.parse(svg).getroot().tag.endswith("svg")

    page = (out / "index.html").read_text()
    parsed = _parse(page)
    assert "script" not in parsed.tags and "<script>alert" not in page  # the study name is text, not markup
    assert NASTY in "".join(parsed.text)
    assert parsed.imgs and all((out / src).is_file() and not src.startswith(("/", "http")) for src in parsed.imgs)
    assert "http://" not in page and "https://" not in page  # offline: nothing to fetch
    assert len(parsed.ids) == len(set(parsed.ids))  # every section link has one target
    for href in parsed.links:
        assert href[1:] in parsed.ids if href.startswith("#") else (out / href).is_file(), href
    assert "proxy top-1" in page and "not ImageNet" in page

    csv = (out / "tables" / "trials.csv").read_text()
    assert csv.splitlines()[0].startswith("study,budget_mflops,budget_ms,trial,state")
    assert len(csv.splitlines()) == 1 + sum(map(len, records.values()))
    md = (out / "tables" / "best_per_budget.md").read_text()
    assert "| study | budget | budget_mflops | budget_ms | kind |" in md and "nan" not in md and "None" not in md


def test_csv_cells_cannot_run_as_spreadsheet_formulas(tmp_path):
    name = "=HYPERLINK(1)"
    result = build_report({name: [rec(name, 0)]}, {name: per_budget()[1]}, tmp_path / "r")
    assert "\n'=HYPERLINK(1)," in (result.out_dir / "tables" / "trials.csv").read_text()


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ({}, "No studies found"),
        ({"s": []}, "has no trials yet"),
        ({"s": [{"study": "s", "trial": i, "state": "fail"} for i in range(3)]}, "has only failed trials (3)"),
        (
            {"s": [rec("s", 0), rec("s", 1, "running"), rec("s", 2, "waiting")]},
            "is not finished (1 running, 1 waiting",
        ),
    ],
    ids=["no-studies", "empty", "only-failed", "running"],
)
def test_unfinished_studies_are_reported_plainly(tmp_path, records, expected):
    attrs = {name: per_budget()[1] for name in records}
    result = build_report(records, attrs, tmp_path / "r")
    assert any(expected in n for n in result.notes), result.notes
    page = (result.out_dir / "index.html").read_text()
    assert expected.replace("(", "").split()[0] in page and "Read first" in page
    assert all((result.out_dir / src).is_file() for src in _parse(page).imgs)


def test_a_failed_build_keeps_the_previous_report(tmp_path, monkeypatch):
    records, attrs = random_studies(seed=13, n=20)
    out = tmp_path / "reports" / "demo"
    build_report(records, attrs, out, title="first")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    # Plots are drawn after the tables: the new report is half written when this fails.
    monkeypatch.setattr(plots, "plot_accuracy_vs_groups", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build_report(records, attrs, out, title="second")
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["demo"]  # no temp folder left behind


def test_rebuild_replaces_a_report_but_never_a_foreign_folder(tmp_path):
    records, attrs = random_studies(seed=17, n=10)
    out = tmp_path / "demo"
    build_report(records, attrs, out, title="first")
    (out / "notes.txt").write_text("the user's")  # a rebuild once deleted it (issue 17); more in test_report_hostile
    build_report(records, attrs, out, title="second")
    assert "second" in (out / "index.html").read_text() and (out / "notes.txt").read_text() == "the user's"
    assert (out / MARKER).is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
    old_mask = os.umask(0o022)
    try:  # readable by others, as files written without a temp file would be (a report may be served)
        build_report(records, attrs, out, title="third")
    finally:
        os.umask(old_mask)
    assert all(p.stat().st_mode & 0o777 == (0o755 if p.is_dir() else 0o644) for p in [out, *out.rglob("*")])

    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    with pytest.raises(ReportError, match="not a shufflesearch report"):
        build_report(records, attrs, home)
    assert (home / "thesis.tex").read_text() == "precious" and not (home / "index.html").exists()


def test_a_dotted_or_symlinked_out_path_replaces_the_real_folder(tmp_path, monkeypatch):
    """`a/../a` once renamed `a` away and then looked for it inside itself: the report was lost."""
    records, attrs = random_studies(seed=17, n=10)
    out = tmp_path / "demo"
    build_report(records, attrs, out, title="first")
    build_report(records, attrs, tmp_path / "demo" / ".." / "demo", title="second")
    assert "second" in (out / "index.html").read_text()
    (tmp_path / "link").symlink_to(out, target_is_directory=True)
    result = build_report(records, attrs, tmp_path / "link", title="third")
    assert "third" in (out / "index.html").read_text() and result.out_dir == tmp_path / "link"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "link"]  # nothing renamed left behind
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    for here in (".", "..", str(empty)):
        with pytest.raises(ReportError, match="is the current folder or holds it"):
            build_report(records, attrs, here)
    assert empty.is_dir() and not list(empty.iterdir())


# -- a study file ------------------------------------------------------------------------
TWO_BUDGETS = """
[study]
name = "two"
[budget]
mflops = [13, 40]
[space]
groups = [3]
scale = [0.1, 1.0]
"""


def test_report_study_reads_the_study_files_budgets(tmp_path, monkeypatch):
    from shufflesearch.report import study
    from shufflesearch.search.study_file import load_study

    (tmp_path / "two.toml").write_text(TWO_BUDGETS)
    config = load_study(tmp_path / "two.toml")
    stored = {"two-13M": {"candidates": 7}}  # the 40M budget has not started yet
    monkeypatch.setattr(study, "study_attrs", lambda url: stored)
    monkeypatch.setattr(study, "load_records", lambda url, names: {n: [rec(n, 0, scale=0.25)] for n in names})
    monkeypatch.chdir(tmp_path)
    result = study.report_study(config, "sqlite:///two.db")
    assert result.out_dir == Path("reports") / "two" and (tmp_path / "reports" / "two" / "index.html").is_file()
    rows = {r["study"]: r for r in result.tables["studies"]}
    assert list(rows) == ["two-13M", "two-40M"] and rows["two-40M"]["trials"] == 0
    assert rows["two-13M"]["candidates"] == 7 and rows["two-13M"]["hi_mflops"] == 13
    only = study.report_study(config, "sqlite:///two.db", ["two-13M"], tmp_path / "only")
    assert [r["study"] for r in only.tables["studies"]] == ["two-13M"]


def test_report_study_refuses_unknown_studies_and_empty_storage(tmp_path):
    from shufflesearch.errors import UsageError
    from shufflesearch.report import NothingToReport, UnknownStudy, report_study
    from shufflesearch.search.study_file import load_study

    (tmp_path / "two.toml").write_text(TWO_BUDGETS)
    config = load_study(tmp_path / "two.toml")
    with pytest.raises(UnknownStudy, match=r"'two-9M' is not a study of .*two.toml; choose from two-13M, two-40M"):
        report_study(config, f"sqlite:///{tmp_path / 'two.db'}", ["two-13M", "two-9M"])
    with pytest.raises(
        NothingToReport, match=r"study .two. has no trials yet in sqlite:///.*; run: shufflesearch search"
    ):
        report_study(config, f"sqlite:///{tmp_path / 'missing.db'}", out=tmp_path / "r")
    assert issubclass(NothingToReport, UsageError) and not (tmp_path / "r").exists()
    assert not (tmp_path / "missing.db").exists()  # a report never creates a storage


# -- a real study ---------------------------------------------------------------------------
@pytest.mark.slow
def test_report_of_a_real_tiny_study(tmp_path):
    from shufflesearch.accuracy.datasets import DatasetError, load_dataset
    from shufflesearch.report import report_study
    from shufflesearch.search.results import load_records
    from shufflesearch.search.study_file import load_study
    from shufflesearch.search.workers import run_search

    try:
        load_dataset("fashion-mnist")
    except DatasetError as exc:
        (pytest.fail if IN_CI else pytest.skip)(f"Fashion-MNIST is not installed ({exc})")
    study_file = tmp_path / "tiny.toml"
    study_file.write_text(
        textwrap.dedent("""
        [study]
        name = "tiny"
        trials = 2
        pruner = "none"
        [budget]
        mflops = [13]
        [space]
        groups = [3, 8]
        scale = [0.1, 0.5]
        repeats = [[1, 2], [1, 2], [1, 2]]
        [accuracy.fidelity]
        train_images = 256
        epochs = 1
        eval_images = 200
        curve_eval_images = 100
    """)
    )
    config = load_study(study_file)
    url = config.default_storage()
    run_search(config, url, trials=2)

    records = load_records(url)
    result = report_study(config, url, out=tmp_path / "reports" / "tiny")
    assert list(records) == ["tiny-13M"] and len(records["tiny-13M"]) == 2
    best = [r for r in result.tables["best_per_budget"] if r["kind"] == SEARCHED]
    from shufflesearch.search.results import study_attrs

    race = study_attrs(url)["tiny-13M"]["race"]  # after the search, its two trials raced with real training
    assert set(race["scores"]) == {str(r["trial"]) for r in records["tiny-13M"]} and race["extra_trainings"] >= 2
    top = next(r for r in records["tiny-13M"] if r["trial"] == race["winner"])  # the race's winner is the best
    assert best[0]["top1_pct"] == pytest.approx(round(100 * top["top1"], 2)) and best[0]["trial"] == race["winner"]
    assert any(line.startswith("tiny-13M: the race of 2 finalists") for line in result.summary)
    assert (result.out_dir / "tables" / "races.csv").is_file()
    assert any("tiny-13M" in line and "finished" in line for line in result.summary)
    assert (result.out_dir / "plots" / "accuracy_vs_mflops.png").is_file()
    complete = [r for r in records["tiny-13M"] if r["state"] == "complete"]
    near_chance = sum(100 * r["top1"] <= 15 for r in complete)  # 10 classes: chance is 10 %
    queued_only = all(r["preset"] for r in complete)
    expected = [f"tiny-13M: {near_chance} of {len(complete)} complete trials score within 5 points of chance"] * bool(
        near_chance) + ["tiny-13M: every complete trial is one of the"] * queued_only  # fmt: skip
    assert [n[: len(e)] for n, e in zip(result.notes, expected)] == expected and len(result.notes) == len(expected) + 1
    assert "latency" in result.notes[-1]  # and the note that no latency was measured
    import csv

    with open(result.out_dir / "tables" / "provenance.csv") as f:
        (made,) = list(csv.DictReader(f))
    assert (
        made["recipe"].startswith("256 images x 1 epochs at 48 px")
        and "scored on 200 of 5000 validation images" in made["recipe"]
    )
    assert made["split"].startswith("validation (5000 images held out of the training set")  # never called test
    assert made["seeds"].startswith("0") and made["devices"] == "cpu" and made["trained_px"] == "48"
    assert made["dataset"].startswith("fashion-mnist:") and made["fidelity"].startswith("never measured")
    assert "trained at 48 px" in next(line for line in result.summary if "best" in line)

"""The report page in a real headless browser (Debian's chromium): it renders and every image loads.

The check copies index.html to check.html with a script appended that writes each image's
naturalWidth into the page, then reads the DOM back with `--dump-dom`; a screenshot must
not be blank. The report itself has no script. In CI a missing chromium is a failure.
"""

import os
import re
import shutil
import subprocess

import pytest
from PIL import Image, ImageStat
from test_report import NASTY, random_studies

from shufflesearch.report.build import build_report

IN_CI = os.environ.get("CI") == "true"
BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)

CHECK = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "image-check";
  const width = i => i.getAttribute("src") + " " + (i.complete ? i.naturalWidth : -1);
  out.textContent = [...document.images].map(width).join("\\n");
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="module")
def browser():
    if BROWSER is None:
        message = "no headless browser: apt-get install chromium"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return BROWSER


def _chromium(browser, tmp_path, *args):
    profile = tmp_path / "profile"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env={**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _image_widths(browser, tmp_path, report):
    page = (report / "index.html").read_text()
    (report / "check.html").write_text(page.replace("</body>", CHECK + "</body>"))
    dom = _chromium(browser, tmp_path, "--dump-dom", (report / "check.html").as_uri())
    found = re.search(r'<pre id="image-check">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    widths = dict(line.rsplit(" ", 1) for line in found.group(1).strip().splitlines())
    return {src: int(w) for src, w in widths.items()}, dom


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    records, attrs = random_studies(seed=21, n=25)
    nasty = f"{NASTY}-40M"
    records[nasty] = [{**r, "study": nasty, "latency_ms": r["mflops"] / 3, "latency_kind": "measured"}
                      for r in records.pop("ladder-40M")]  # fmt: skip
    attrs[nasty] = attrs.pop("ladder-40M")
    out = tmp_path_factory.mktemp("browser") / "report"
    return build_report(records, attrs, out, title=f"Browser check {NASTY}")


def test_every_image_loads_and_names_render_as_text(browser, report, tmp_path):
    widths, dom = _image_widths(browser, tmp_path, report.out_dir)
    pngs = sorted(str(f) for f in report.files if f.suffix == ".png")
    assert sorted(widths) == pngs and len(pngs) == 5
    assert all(w >= 600 for w in widths.values()), widths
    # The study name came back as text: its markup was escaped, so the only script is our checker.
    assert dom.count("<script>") == 1 and "&lt;script&gt;alert(1)&lt;/script&gt;&amp;" in dom


def test_a_missing_image_is_caught(browser, report, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(report.out_dir, broken)
    (broken / "plots" / "history.png").unlink()
    widths, _ = _image_widths(browser, tmp_path, broken)
    assert widths["plots/history.png"] == 0 and widths["plots/accuracy_vs_mflops.png"] > 0


def test_screenshot_is_not_blank(browser, report, tmp_path):
    shot = tmp_path / "shot.png"
    _chromium(
        browser,
        tmp_path,
        "--window-size=1280,2400",
        f"--screenshot={shot}",
        report.out_dir.joinpath("index.html").as_uri(),
    )
    with Image.open(shot) as im:
        gray = im.convert("L")
        assert im.size == (1280, 2400)
        assert len(gray.getcolors(256) or []) > 50  # text, plot lines and colours, not a blank page
        assert ImageStat.Stat(gray).stddev[0] > 20
        # The plots sit below the summary: the lower half of the screenshot is not empty either.
        lower = gray.crop((0, 1200, 1280, 2400))
        assert ImageStat.Stat(lower).stddev[0] > 20

"""The report page in a real headless browser (Debian's chromium): it renders and every image loads.

The check copies index.html to check.html with a script appended that writes, for each image, its
naturalWidth and what the browser decoded (distinct colours, share of non-white pixels, read back
through a canvas) into the page; the folder is served on loopback, so the canvas may read the
images. The DOM comes back with `--dump-dom`; a screenshot must not be blank. The report itself
has no script. In CI a missing chromium is a failure.
"""

import contextlib
import functools
import os
import re
import shutil
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image, ImageStat
from test_report import NASTY, random_studies
from test_report_plots import stand_in_curve

from shufflesearch.report.build import build_report

IN_CI = os.environ.get("CI") == "true"
BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)

CHECK = """<script>
// Per image: its src, naturalWidth (-1: not finished), distinct colours (4 bits a channel) and share of
// non-white pixels, as the browser decoded them.
const drawn = i => {
  if (!i.complete || !i.naturalWidth) return "0 0";
  const canvas = document.createElement("canvas");
  canvas.width = i.naturalWidth;
  canvas.height = i.naturalHeight;
  const g = canvas.getContext("2d");
  g.drawImage(i, 0, 0);
  const px = g.getImageData(0, 0, canvas.width, canvas.height).data;
  const colours = new Set();
  let ink = 0;
  for (let k = 0; k < px.length; k += 4) {
    colours.add(((px[k] >> 4) << 8) | ((px[k + 1] >> 4) << 4) | (px[k + 2] >> 4));
    if (px[k] + px[k + 1] + px[k + 2] < 720) ink++;
  }
  return colours.size + " " + (ink / (px.length / 4)).toFixed(4);
};
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "image-check";
  const line = i => i.getAttribute("src") + " " + (i.complete ? i.naturalWidth : -1) + " " + drawn(i);
  out.textContent = [...document.images].map(line).join("\\n");
  document.body.appendChild(out);
});
</script>"""
NEW_PLOTS = ("plots/learning_curves.png", "plots/parameter_importance.png")


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


@contextlib.contextmanager
def served(folder):
    """The folder on a loopback HTTP server: one origin, so the check's canvas may read the images."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # pytest shows stderr of failing tests only; keep it for real errors
        pass


def _images(browser, tmp_path, report):
    """{src: (naturalWidth, distinct colours, share of non-white pixels)} as the browser loaded the page."""
    page = (report / "index.html").read_text()
    (report / "check.html").write_text(page.replace("</body>", CHECK + "</body>"))
    with served(report) as root:
        dom = _chromium(browser, tmp_path, "--dump-dom", f"{root}/check.html")
    found = re.search(r'<pre id="image-check">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    rows = [line.rsplit(" ", 3) for line in found.group(1).strip().splitlines()]
    return {src: (int(w), int(colours), float(ink)) for src, w, colours, ink in rows}, dom


def _image_widths(browser, tmp_path, report):
    images, dom = _images(browser, tmp_path, report)
    return {src: width for src, (width, _, _) in images.items()}, dom


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    records, attrs = random_studies(seed=21, n=25)
    for recs in records.values():  # learning curves as the trainer and Optuna store them
        for i, r in enumerate(recs):
            if r["state"] == "complete":
                r["curve"] = stand_in_curve(r["top1"], 4)
            elif r["state"] == "pruned":
                r["curve"], r["intermediate"] = None, {e: 0.5 - 0.2 / e for e in range(1, 2 + i % 3)}
    nasty = f"{NASTY}-40M"
    records[nasty] = [{**r, "study": nasty, "latency_ms": r["mflops"] / 3, "latency_kind": "measured"}
                      for r in records.pop("ladder-40M")]  # fmt: skip
    attrs[nasty] = attrs.pop("ladder-40M")
    out = tmp_path_factory.mktemp("browser") / "report"
    return build_report(records, attrs, out, title=f"Browser check {NASTY}")


def test_every_image_loads_and_names_render_as_text(browser, report, tmp_path):
    widths, dom = _image_widths(browser, tmp_path, report.out_dir)
    pngs = sorted(str(f) for f in report.files if f.suffix == ".png")
    assert sorted(widths) == pngs and set(NEW_PLOTS) <= set(pngs) and len(pngs) >= 7
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


def test_the_new_plots_are_drawn_in_the_page(browser, report, tmp_path):
    """Learning curves and parameter importance load, and what the browser decoded is a plot: many colours
    (lines per trial and per budget, text), a fair share of ink; a plot that only says "too few trials" has
    neither. An all-white image of the same size fails."""
    images, _ = _images(browser, tmp_path, report.out_dir)
    for src in NEW_PLOTS:
        width, colours, ink = images[src]
        # A plot that only says "nothing to plot" decodes to greys only (16 levels here) and ~3 % ink.
        assert width >= 600 and colours > 16 and ink > 0.06, (src, images[src])

    blank = tmp_path / "blank"
    shutil.copytree(report.out_dir, blank)
    with Image.open(blank / NEW_PLOTS[0]) as im:
        size = im.size
    Image.new("RGB", size, "white").save(blank / NEW_PLOTS[0])
    images, _ = _images(browser, tmp_path, blank)
    width, colours, ink = images[NEW_PLOTS[0]]
    assert width == size[0] and colours == 1 and ink == 0

"""A full disk or a read-only folder under every output, through the real CLI.

Each case writes a previous version, breaks the file system for real, runs the command and
checks: exit 1, one `error: <problem>: <path>` line and no traceback, and the folder byte for
byte as before (the previous output intact, no temporary file left). A proxy-result cache that
cannot be written only warns: the training result is correct without it.

The faults are real: a small tmpfs filled up (ENOSPC) and a tmpfs remounted read-only (EROFS)
when this process may mount (root); else RLIMIT_FSIZE in the child (EFBIG, a real failed
write) and chmod 0555 (EACCES, not root). SHUFFLESEARCH_TEST_NO_MOUNT=1 forces the fallbacks.
"""

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from servers import require

from shufflesearch.accuracy.cache import CacheWarning, ResultCache
from shufflesearch.accuracy.datasets.fashion_mnist import FASHION_MNIST_DIR

CLI = str(Path(sys.executable).with_name("shufflesearch"))
PAGE = 4096  # tmpfs allocates whole pages
TMPFS_SIZE = "4m"
NO_MOUNT = os.environ.get("SHUFFLESEARCH_TEST_NO_MOUNT") == "1"

TINY_STUDY = """
    [study]
    name = "tiny"
    trials = 1
    pruner = "none"
    [budget]
    mflops = [13]
    [space]
    groups = [3, 8]
    scale = [0.1, 0.5]
    repeats = [[1, 2], [1, 2], [1, 2]]
    [accuracy.fidelity]
    train_images = 64
    epochs = 1
    eval_images = 64
    curve_eval_images = 32
"""
LUT_SPACE = """
    [study]
    name = "lutspace"
    [budget]
    mflops = [0.5]
    [space]
    groups = [3]
    scale = [0.25, 0.25]
    repeats = [[1, 1], [1, 1], [1, 1]]
    resolution = 32
"""


# -- the faulty folders ------------------------------------------------------------------
_mount_works: bool | None = None


def mount_works(scratch: Path) -> bool:
    """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN); probed once."""
    global _mount_works
    if _mount_works is None:
        probe = scratch / "mount-probe"
        probe.mkdir(exist_ok=True)
        _mount_works = not NO_MOUNT and os.geteuid() == 0 and mount_tmpfs(probe)
        if _mount_works:
            unmount(probe)
    return _mount_works


def mount_tmpfs(path: Path, options: str = f"size={TMPFS_SIZE}") -> bool:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)  # busy: detach now, free when unused


def run_cli(*args, env: dict, preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, env=env, timeout=300,
                          preexec_fn=preexec_fn)  # fmt: skip


class FullDisk:
    """A folder whose file system can be filled: a real tmpfs, or RLIMIT_FSIZE in the child."""

    def __init__(self, path: Path, mounted: bool) -> None:
        self.path, self.mounted = path, mounted
        self.problem = "No space left on device" if mounted else "File too large"
        self._limit: int | None = None

    def fill(self, leave: int) -> None:
        """From now on at most about `leave` bytes can be written (tmpfs: whole pages; RLIMIT: per file)."""
        if not self.mounted:
            self._limit = leave
            return
        st = os.statvfs(self.path)
        filler = st.f_bavail * st.f_frsize - (leave // PAGE) * PAGE
        with open(self.path / "filler", "wb") as f:
            f.write(b"\0" * filler)

    def unfill(self) -> None:
        (self.path / "filler").unlink(missing_ok=True)
        self._limit = None

    def run(self, *args, env: dict) -> subprocess.CompletedProcess:
        limit = self._limit
        if limit is None:
            return run_cli(*args, env=env)

        def limit_file_size() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        return run_cli(*args, env=env, preexec_fn=limit_file_size)


class ReadOnly:
    """A folder made read-only for real: a tmpfs remounted ro, or chmod 0555 when not root."""

    def __init__(self, path: Path, mounted: bool) -> None:
        self.path, self.mounted = path, mounted
        self.problem = "Read-only file system" if mounted else "Permission denied"

    def freeze(self) -> None:
        if self.mounted:
            done = subprocess.run(["mount", "-o", "remount,ro", str(self.path)], capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
        else:
            for folder in [self.path, *(p for p in self.path.rglob("*") if p.is_dir())]:
                folder.chmod(0o555)

    def thaw(self) -> None:
        if not self.mounted:
            for folder in [self.path, *(p for p in self.path.rglob("*") if p.is_dir())]:
                folder.chmod(0o755)

    def run(self, *args, env: dict) -> subprocess.CompletedProcess:
        return run_cli(*args, env=env)


@pytest.fixture
def full_disk(tmp_path):
    path = tmp_path / "full"
    path.mkdir()
    mounted = mount_works(tmp_path) and mount_tmpfs(path)
    try:
        yield FullDisk(path, mounted)
    finally:
        if mounted:
            unmount(path)


@pytest.fixture
def read_only(tmp_path):
    path = tmp_path / "ro"
    path.mkdir()
    mounted = mount_works(tmp_path) and mount_tmpfs(path)
    if not mounted and os.geteuid() == 0:
        pytest.skip("root without permission to mount: a read-only mount is impossible and root ignores chmod")
    folder = ReadOnly(path, mounted)
    try:
        yield folder
    finally:
        folder.thaw()
        if mounted:
            unmount(path)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The CLI's environment: a private result cache, and matplotlib's font cache built beforehand.

    The font index is slow to build, and its 40 kB file would itself hit RLIMIT_FSIZE in the child.
    """
    base = tmp_path_factory.mktemp("env")
    environ = {**os.environ, "XDG_CACHE_HOME": str(base / "xdg-cache"), "MPLCONFIGDIR": str(base / "mpl")}
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=environ, check=True)
    return environ


# -- checks ------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under `root` (hidden ones too) -> its content hash."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
            for p in sorted(root.rglob("*"))}  # fmt: skip


def assert_one_line_error(done: subprocess.CompletedProcess, problem: str, *paths: Path) -> None:
    """Exit 1 and `error: <problem>: <path>` naming one of `paths` (what the user asked for, not a temporary name)."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, (done.returncode, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert lines[0] in {f"error: {problem}: {path}" for path in paths}, lines[0]


def write_previous(path: Path, text: str = "the previous version\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# -- reports -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, env):
    """A real study (one trial trained on Fashion-MNIST) to report on."""
    require(FASHION_MNIST_DIR.exists(), "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    folder = tmp_path_factory.mktemp("study")
    study = folder / "tiny.toml"
    study.write_text(textwrap.dedent(TINY_STUDY))
    done = run_cli("search", study, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return study


def previous_report(folder: Path) -> None:
    """An earlier report: what `shufflesearch report` may replace (it holds the marker file)."""
    write_previous(folder / ".shufflesearch-report", "Written by `shufflesearch report`\n")
    write_previous(folder / "index.html", "<p>last week's report</p>\n")
    write_previous(folder / "tables" / "trials.csv", "name,top1\nold,0.5\n")


def test_report_on_a_full_disk_keeps_the_previous_report(tiny_study, full_disk, env):
    out = full_disk.path / "tiny"
    previous_report(out)
    full_disk.fill(leave=32 * 1024)  # some tables fit, the plots do not
    before = snapshot(full_disk.path)
    done = full_disk.run("report", tiny_study, "--out", out, env=env)
    assert_one_line_error(done, full_disk.problem, out)
    assert snapshot(full_disk.path) == before


def test_report_into_a_read_only_folder_keeps_the_previous_report(tiny_study, read_only, env):
    out = read_only.path / "tiny"
    previous_report(out)
    read_only.freeze()
    before = snapshot(read_only.path)
    done = read_only.run("report", tiny_study, "--out", out, env=env)
    assert_one_line_error(done, read_only.problem, out)
    assert snapshot(read_only.path) == before


# -- study database ----------------------------------------------------------------------
def test_search_with_its_database_in_a_read_only_folder_fails_clearly(tiny_study, read_only, env):
    for name in ("tiny.toml", "tiny.db"):
        (read_only.path / name).write_bytes((tiny_study.parent / name).read_bytes())
    read_only.freeze()
    before = snapshot(read_only.path)
    done = read_only.run("search", read_only.path / "tiny.toml", "--trials", "2", "--json", env=env)
    assert_one_line_error(done, read_only.problem, read_only.path)
    assert snapshot(read_only.path) == before


def test_a_study_in_a_read_only_folder_can_still_be_listed_and_reported(tiny_study, read_only, env, tmp_path):
    """Readers change nothing: a study archived on a read-only mount is listed and reported, byte for byte intact."""
    for name in ("tiny.toml", "tiny.db"):
        (read_only.path / name).write_bytes((tiny_study.parent / name).read_bytes())
    read_only.freeze()
    before = snapshot(read_only.path)
    listed = read_only.run("studies", "list", "--storage", f"sqlite:///{read_only.path / 'tiny.db'}", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert sum(s["complete"] for s in json.loads(listed.stdout)) >= 1
    reported = read_only.run("report", read_only.path / "tiny.toml", "--out", tmp_path / "r", "--json", env=env)
    assert reported.returncode == 0, reported.stderr
    assert (tmp_path / "r" / "index.html").is_file()
    assert snapshot(read_only.path) == before


def test_a_read_only_study_with_a_pending_wal_is_read_whole(tiny_study, read_only, env):
    """A writer killed mid-study leaves committed trials in the -wal file; reading as immutable would miss them."""
    for name in ("tiny.toml", "tiny.db"):
        (read_only.path / name).write_bytes((tiny_study.parent / name).read_bytes())
    db = read_only.path / "tiny.db"
    change = ("import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA journal_mode=WAL'); "
              "c.execute('PRAGMA wal_autocheckpoint=0'); c.execute(\"UPDATE trials SET state = 'FAIL'\"); "
              "c.commit(); os._exit(0)")  # fmt: skip
    subprocess.run([sys.executable, "-c", change, str(db)], check=True)  # exits without a checkpoint
    assert (read_only.path / "tiny.db-wal").stat().st_size > 0
    read_only.freeze()
    before = snapshot(read_only.path)
    listed = read_only.run("studies", "list", "--storage", f"sqlite:///{db}", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    studies = json.loads(listed.stdout)
    assert sum(s["failed"] for s in studies) >= 1 and sum(s["complete"] for s in studies) == 0  # the -wal was read
    assert snapshot(read_only.path) == before


# -- the proxy-result cache --------------------------------------------------------------
TRAIN = ("train", "--groups", "3", "--scale", "0.25", "--subset", "64", "--epochs", "1", "--resolution", "32",
         "--json")  # fmt: skip


def previous_cache(cache_home: Path) -> Path:
    path = cache_home / "shufflesearch" / "proxy-results.sqlite"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # this one must work
        ResultCache(path).put("earlier run", {"top1": 0.5})
    return path


def assert_trained_with_one_warning(done: subprocess.CompletedProcess, cache: Path, *problems: str) -> None:
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert '"top1"' in done.stdout and '"cached": false' in done.stdout, done.stdout
    about_cache = [line for line in done.stderr.splitlines() if str(cache) in line]
    assert len(about_cache) == 1 and "warning" in about_cache[0].lower(), done.stderr
    assert any(problem in about_cache[0] for problem in problems), about_cache[0]


def test_train_with_a_read_only_cache_warns_once_and_trains(read_only, env):
    require(FASHION_MNIST_DIR.exists(), "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    cache = previous_cache(read_only.path)
    read_only.freeze()
    before = snapshot(read_only.path)
    done = read_only.run(*TRAIN, env={**env, "XDG_CACHE_HOME": str(read_only.path)})
    assert_trained_with_one_warning(done, cache, read_only.problem)
    assert snapshot(read_only.path) == before


def test_train_with_a_full_cache_disk_warns_once_and_trains(full_disk, env):
    require(FASHION_MNIST_DIR.exists(), "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    cache = previous_cache(full_disk.path)
    full_disk.fill(leave=1024)  # no page for SQLite's 32 kB index; under RLIMIT, room for tempfile's probe
    done = full_disk.run(*TRAIN, env={**env, "XDG_CACHE_HOME": str(full_disk.path)})
    # Under RLIMIT_FSIZE our 1-byte probe fits, so the reason is SQLite's own.
    assert_trained_with_one_warning(done, cache, full_disk.problem if full_disk.mounted else "disk I/O error")
    full_disk.unfill()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reopened = ResultCache(cache)
        assert reopened.get("earlier run") == {"top1": 0.5} and len(reopened) == 1


def test_a_cache_write_that_fills_the_disk_keeps_earlier_entries(full_disk):
    """The disk fills between two runs of a search: the put fails whole, the search goes on."""
    if not full_disk.mounted:
        pytest.skip("needs a real full file system: RLIMIT_FSIZE would limit this test process itself")
    cache = ResultCache(full_disk.path / "results.sqlite")
    cache.put("earlier run", {"top1": 0.5})
    full_disk.fill(leave=0)
    with pytest.warns(CacheWarning, match=f"{full_disk.path}.*{full_disk.problem}") as caught:
        cache.put("this run", {"curve": "x" * 200_000})
        cache.put("next run", {"curve": "y" * 200_000})
    assert len(caught) == 1  # once, not once per trial
    assert cache.get("this run") is None
    full_disk.unfill()
    assert cache.get("earlier run") == {"top1": 0.5} and len(cache) == 1


# -- single files: LUT, complexity table, ONNX export, arm64 set-up ---------------------
def lut_build(out: Path, tmp_path: Path) -> tuple:
    space = tmp_path / "lutspace.toml"
    space.write_text(textwrap.dedent(LUT_SPACE))
    return ("lut", "build", "--space", space, "--runs", "3", "--rounds", "1", "--out", out, "--json")


def table_out(out: Path, tmp_path: Path) -> tuple:
    return ("table", "--groups", "1,2,3,4,8", "--scales", "0.25,0.5,1.0", "--out", out, "--json")


def export_out(out: Path, tmp_path: Path) -> tuple:
    return ("export", "--groups", "3", "--scale", "0.25", "--resolution", "32", "--classes", "10", "--out", out)


# command, output file name, bytes left free (less than the new file needs: it fails midway)
SINGLE_FILES = [
    pytest.param(lut_build, "device.lut.json", 1024, id="lut-build"),
    pytest.param(table_out, "complexity.csv", 128, id="table"),
    pytest.param(export_out, "model.onnx", 64 * 1024, id="export"),
]


@pytest.mark.parametrize(("command", "name", "leave"), SINGLE_FILES)
def test_a_full_disk_keeps_the_previous_file(command, name, leave, full_disk, env, tmp_path):
    if command is lut_build and not full_disk.mounted:
        pytest.skip("needs a real full file system: RLIMIT_FSIZE would also stop the models lut build measures")
    out = full_disk.path / "out" / name
    write_previous(out)
    full_disk.fill(leave=leave)
    before = snapshot(full_disk.path)
    done = full_disk.run(*command(out, tmp_path), env=env)
    assert_one_line_error(done, full_disk.problem, out, out.parent)  # the file, or its folder if checked first
    assert snapshot(full_disk.path) == before


@pytest.mark.parametrize(("command", "name", "leave"), SINGLE_FILES)
def test_a_read_only_folder_keeps_the_previous_file(command, name, leave, read_only, env, tmp_path):
    out = read_only.path / "out" / name
    write_previous(out)
    read_only.freeze()
    before = snapshot(read_only.path)
    done = read_only.run(*command(out, tmp_path), env=env)
    assert_one_line_error(done, read_only.problem, out, out.parent)  # the file, or its folder if checked first
    assert snapshot(read_only.path) == before


def test_arm64_setup_into_a_read_only_cache_fails_before_any_download(read_only, env):
    read_only.freeze()
    done = read_only.run("setup", "arm64", env={**env, "XDG_CACHE_HOME": str(read_only.path)})
    assert_one_line_error(done, read_only.problem, read_only.path / "shufflesearch" / "arm64")
    assert snapshot(read_only.path) == {}

"""Running the aarch64 guest: the host's qemu-aarch64, the pinned CPU, the counting plugin, a fixed environment.

Everything here is shared by the one-time set-up (`sysroot`) and each count (`count`); the
argv and environment are fixed so that instruction counts repeat between processes.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.resources
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ...errors import MachineError

SETUP_COMMAND = "shufflesearch setup arm64"
# Debian packages the host needs: the dynamic qemu-aarch64 (qemu-user-static has no plugin support),
# a C compiler and glib headers for the plugin, libfaketime (the guest's frozen clock, below), and
# dpkg/apt which every Debian host has.
HOST_PACKAGES: tuple[str, ...] = ("qemu-user", "gcc", "libc6-dev", "libglib2.0-dev", "pkg-config", "libfaketime")
HOST_INSTALL_COMMAND = "sudo apt-get install -y " + " ".join(HOST_PACKAGES)
GUEST_PYTHON = "3.11"
# The emulated CPU and the cpuinfo the guest reads must agree: ONNX Runtime picks kernels from both.
# Neoverse-N1: QEMU's model has MIDR 0x414fd0c1 (implementer 0x41, variant 4, part 0xd0c, revision 1).
CPU_MODEL = "neoverse-n1"
CPU_MIDR = 0x414FD0C1
CPU_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs"
PLUGIN_SOURCE = "insn_count.c"
GUEST_ADDRESS_SPACE = "0x400000000"  # 16 GiB reserved (not committed) for the guest: enough for 2x at 720x1280
# The guest's wall clock, frozen. ONNX Runtime reads CLOCK_REALTIME about 6 times in every Run()
# (qemu -strace between the markers) and its path depends on the values (which check takes it was not
# pinned down; Run() has wall-clock threshold checks), so the same model forked from the same state counted
# 341 (or 108) instructions more or less in some runs when the host was loaded: 19 of 1,300 blocks
# differed between two builds of the default space. With the clock frozen they count alike.
# QEMU 7.2 answers the guest's clock_gettime with the host libc's, which libfaketime replaces in the
# qemu-aarch64 process only. -U keeps its variables out of the guest's environment, except FAKETIME:
# QEMU 7.2's -U removes the first variable whose name merely starts with the one given, so FAKETIME
# stays in the guest's environment, a constant the guest never reads (the shipped counts include it).
FROZEN_CLOCK = "2020-01-01 00:00:00"
FAKETIME_GLOBS = ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1")
# libfaketime 0.9.10 also exports FAKETIME_SHARED ("/faketime_sem_<pid> /faketime_shm_<pid>", a PID) and
# creates that pair in /dev/shm; QEMU's exit skips libfaketime's clean-up, so release_clock() removes it.
FAKETIME_HIDDEN = ("LD_PRELOAD", "FAKETIME_SHARED", "FAKETIME_DONT_FAKE_MONOTONIC", "NO_FAKE_STAT")
SHARED_MEMORY = Path("/dev/shm")


class EmulationError(MachineError):
    """QEMU, the sysroot or the plugin is missing or broken; the message ends with the fix command."""


def qemu_binary() -> tuple[str, str]:
    """Path and version line of the dynamic qemu-aarch64, or EmulationError naming the fix."""
    path = shutil.which("qemu-aarch64")
    if path is None:
        raise EmulationError(
            f"qemu-aarch64 (dynamic, with plugin support) is not installed; run: {HOST_INSTALL_COMMAND}"
        )
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    return path, out.splitlines()[0].strip() if out else "unknown"


def plugin_path(root: Path) -> Path:
    """The plugin built from the shipped source; rebuilt (in under a second) when the source changed."""
    source = importlib.resources.files(__package__).joinpath(PLUGIN_SOURCE).read_bytes()
    target = root / "plugin" / f"insn_count-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if not target.exists():
        _build_plugin(source, root / "include", target)
    return target


def guest_command(qemu: str, sysroot: Path, plugin: Path, counts: Path) -> list[str]:
    """argv running the guest's Python under QEMU with the counting plugin writing to `counts`."""
    if "," in str(counts):
        raise EmulationError(f"plugin output path {counts} has a comma (QEMU's option separator); set TMPDIR elsewhere")
    unset = [arg for name in FAKETIME_HIDDEN for arg in ("-U", name)]
    return [
        qemu,
        *unset,  # the frozen clock's variables are for qemu-aarch64, not for the guest
        "-L", str(sysroot),
        "-cpu", CPU_MODEL,
        # A fixed seed (AT_RANDOM, getrandom) and a reserved guest address space (guest mmap then no longer
        # follows host ASLR or QEMU's own allocations): counts repeat between processes within ~0.01%.
        "-seed", "0",
        "-R", GUEST_ADDRESS_SPACE,
        "-plugin", f"{plugin},out={counts}",
        "-d", "plugin",
        str(sysroot / "usr" / "bin" / f"python{GUEST_PYTHON}"),
        "-S",  # no site: the host's x86 dist-packages must never be imported
        "-B",
    ]  # fmt: skip


def faketime_library() -> str:
    """Path of the host's libfaketime, or EmulationError naming the fix."""
    found = sorted(path for pattern in FAKETIME_GLOBS for path in glob.glob(pattern))
    if not found:
        raise EmulationError(
            f"libfaketime (the emulated guest's frozen clock) is not installed; run: {HOST_INSTALL_COMMAND}"
        )
    return found[0]


def guest_env() -> dict[str, str]:
    """qemu-aarch64's whole environment: the guest's (fixed, so that instruction counts repeat) and its frozen clock."""
    # Only the wall clock is frozen: the monotonic clock and file times (stat) stay the host's.
    clock = {"LD_PRELOAD": faketime_library(), "FAKETIME": FROZEN_CLOCK, "FAKETIME_DONT_FAKE_MONOTONIC": "1",
             "NO_FAKE_STAT": "1"}  # fmt: skip
    return clock | {
        "PYTHONHOME": "/usr",
        "PYTHONPATH": "/opt/site",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LC_ALL": "C",
        "OMP_NUM_THREADS": "1",
        # ONNX Runtime >= 1.2x runs a telemetry thread that wakes on wall-clock timers and allocates: its
        # timing leaked into the counted thread's malloc paths (counts then varied by ~0.1% between runs).
        "ORT_DISABLE_TELEMETRY": "1",
        "PATH": "/usr/bin:/bin",
    }


def _build_plugin(source: bytes, include: Path, target: Path) -> None:
    if not (include / "qemu-plugin.h").exists():
        raise EmulationError(f"qemu-plugin.h is missing from {include.parent}; run: {SETUP_COMMAND}")
    if shutil.which("gcc") is None or shutil.which("pkg-config") is None:
        raise EmulationError(f"gcc and pkg-config are needed to build the QEMU plugin; run: {HOST_INSTALL_COMMAND}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        (Path(tmp) / PLUGIN_SOURCE).write_bytes(source)
        glib = subprocess.run(["pkg-config", "--cflags", "--libs", "glib-2.0"], capture_output=True, text=True)
        if glib.returncode != 0:
            raise EmulationError(f"glib-2.0 development files not found; run: {HOST_INSTALL_COMMAND}")
        out = Path(tmp) / target.name
        cmd = ["gcc", "-O2", "-Wall", "-fPIC", "-shared", f"-I{include}", str(Path(tmp) / PLUGIN_SOURCE), "-o", str(out)]  # fmt: skip
        run_step(cmd + glib.stdout.split(), "building the QEMU plugin")
        os.replace(out, target)


def release_clock(pid: int) -> None:
    """Remove the semaphore and shared memory libfaketime made for the qemu-aarch64 process `pid`, once it ended."""
    for name in (f"faketime_shm_{pid}", f"sem.faketime_sem_{pid}"):
        with contextlib.suppress(OSError):
            (SHARED_MEMORY / name).unlink()


def run_guest(
    cmd: list[str], input: bytes | None = None, timeout: float | None = None, **popen
) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, input=..., capture_output=True, timeout=...) for qemu-aarch64, then release_clock()."""
    process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
    try:
        stdout, stderr = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        release_clock(process.pid)
    return subprocess.CompletedProcess(cmd, process.returncode, stdout, stderr)


def run_step(cmd: list[str], what: str, env: dict | None = None, timeout: float = 900) -> None:
    try:
        result = run_guest(cmd, timeout=timeout, env=env, text=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmulationError(f"{what} failed ({exc}); run: {SETUP_COMMAND}") from exc
    if result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise EmulationError(f"{what} failed (exit {result.returncode}: {detail[0][:300]}); run: {SETUP_COMMAND}")

"""Running the aarch64 guest: the host's qemu-aarch64, the pinned CPU, the counting plugin, a fixed environment.

Everything here is shared by the one-time set-up (`sysroot`) and each count (`count`); the
argv and environment are fixed so that instruction counts repeat between processes.
"""

from __future__ import annotations

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
# a C compiler and glib headers for the plugin, and dpkg/apt which every Debian host has.
HOST_PACKAGES: tuple[str, ...] = ("qemu-user", "gcc", "libc6-dev", "libglib2.0-dev", "pkg-config")
HOST_INSTALL_COMMAND = "sudo apt-get install -y " + " ".join(HOST_PACKAGES)
GUEST_PYTHON = "3.11"
# The emulated CPU and the cpuinfo the guest reads must agree: ONNX Runtime picks kernels from both.
# Neoverse-N1: QEMU's model has MIDR 0x414fd0c1 (implementer 0x41, variant 4, part 0xd0c, revision 1).
CPU_MODEL = "neoverse-n1"
CPU_MIDR = 0x414FD0C1
CPU_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs"
PLUGIN_SOURCE = "insn_count.c"
GUEST_ADDRESS_SPACE = "0x400000000"  # 16 GiB reserved (not committed) for the guest: enough for 2x at 720x1280


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
    return [
        qemu,
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


def guest_env() -> dict[str, str]:
    """The guest's whole environment: fixed, so that instruction counts repeat."""
    return {
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


def run_step(cmd: list[str], what: str, env: dict | None = None, timeout: float = 900) -> None:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmulationError(f"{what} failed ({exc}); run: {SETUP_COMMAND}") from exc
    if result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise EmulationError(f"{what} failed (exit {result.returncode}: {detail[0][:300]}); run: {SETUP_COMMAND}")

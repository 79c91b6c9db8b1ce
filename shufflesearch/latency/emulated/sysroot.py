"""Set up (once, cached) what `--target arm64-emulated` needs: a Debian arm64 sysroot with Python 3.11,
the aarch64 ONNX Runtime and numpy wheels, a fake ARM /proc/cpuinfo, and the instruction-counting
QEMU plugin built against the header of the host's own QEMU.

Nothing touches the host's apt state: a private apt configuration (own lists, cache, empty dpkg
status, APT::Architecture "arm64") reuses the mirrors of the machine's own apt sources. Everything is
built in a temporary directory and renamed into place when complete, so an interrupted set-up never
leaves a sysroot that looks valid.

>>> root = ensure_sysroot()  # doctest: +SKIP
>>> # about 30 s cold, well under a millisecond when cached
>>> sysroot_status()["ready"]  # doctest: +SKIP
True
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ...atomic import naming
from ...cache_dir import cache_root
from .guest import (
    CPU_FEATURES,
    CPU_MIDR,
    CPU_MODEL,
    GUEST_PYTHON,
    HOST_INSTALL_COMMAND,
    SETUP_COMMAND,
    EmulationError,
    faketime_library,
    guest_command,
    guest_env,
    plugin_path,
    qemu_binary,
    run_step,
)

# Bump when the layout or contents change: older caches are then rebuilt, never half-trusted.
SYSROOT_FORMAT = 1
GUEST_DEBS = ("python3.11", "libpython3.11-stdlib", "libstdc++6", "libgcc-s1")
GUEST_WHEELS = ("onnxruntime", "numpy")
LineProgress = Callable[[str], None]  # one line of text per step


def default_cache_dir() -> Path:
    return cache_root() / "arm64"  # an empty or relative XDG_CACHE_HOME means ~/.cache (the XDG spec)


def read_manifest(cache_dir: str | os.PathLike | None = None) -> dict | None:
    """The completed set-up's manifest, or None when there is no valid set-up at `cache_dir`."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("format") == SYSROOT_FORMAT else None


def sysroot_status(cache_dir: str | os.PathLike | None = None) -> dict:
    """What is set up and which versions, without changing anything.

    >>> sysroot_status()["setup_command"]
    'shufflesearch setup arm64'
    """
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    manifest = read_manifest(root)
    try:
        qemu_path, qemu_version = qemu_binary()
    except EmulationError:
        qemu_path = qemu_version = None
    guest_ort = (manifest or {}).get("wheels", {}).get("onnxruntime")
    try:
        host_ort = importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        host_ort = None
    return {
        "ready": manifest is not None and qemu_path is not None,
        "cache_dir": str(root),
        "sysroot": str(root / "sysroot") if manifest else None,
        "qemu": qemu_path,
        "qemu_version": qemu_version,
        "manifest": manifest,
        "onnxruntime": {"guest": guest_ort, "host": host_ort},  # differ: rebuild with ensure_sysroot(force=True)
        "setup_command": SETUP_COMMAND,
    }


def ensure_sysroot(
    cache_dir: str | os.PathLike | None = None, progress: LineProgress | None = None, force: bool = False
) -> Path:
    """Set up the cache at `cache_dir` (default ~/.cache/shufflesearch/arm64) unless already valid.

    Idempotent and fast when cached; `force` rebuilds (e.g. after upgrading the host's onnxruntime).
    Returns the cache root (the sysroot is `root / "sysroot"`).
    """
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    say = progress or (lambda message: None)
    faketime_library()  # every count needs the guest's frozen clock: a missing host package fails here, named
    if read_manifest(root) is not None and not force:
        with naming(root):
            plugin_path(root)
        return root
    with naming(root):  # a read-only or full cache folder: the error names the cache, not a scratch file
        root.parent.mkdir(parents=True, exist_ok=True)
        with _locked(root.parent / f".{root.name}.lock"):
            for stale in root.parent.glob(f".{root.name}.partial-*"):  # left by a killed set-up (we hold the lock)
                shutil.rmtree(stale, ignore_errors=True)
            if force or read_manifest(root) is None:  # another process may have finished it while we waited
                _build(root, say)
        plugin_path(root)
    return root


# -- set-up steps ------------------------------------------------------------------------------
def _build(root: Path, say: LineProgress) -> None:
    started = time.monotonic()
    qemu_path, qemu_version = qemu_binary()
    for tool in ("gcc", "pkg-config", "apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise EmulationError(f"{tool} is needed to set up arm64 emulation; run: {HOST_INSTALL_COMMAND}")
    work = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.partial-"))
    try:
        staged, scratch = work / "root", work / "scratch"
        sysroot = staged / "sysroot"
        sysroot.mkdir(parents=True)
        apt = _private_apt(scratch)
        say("arm64 set-up: reading the host's Debian mirrors (private apt state)")
        run_step([*apt, "update"], "apt-get update for arm64")
        say("arm64 set-up: downloading Python 3.11 and its arm64 closure")
        run_step([*apt, "install", "--download-only", "--no-install-recommends", *GUEST_DEBS], "arm64 .deb download")
        debs = sorted((scratch / "cache" / "archives").glob("*.deb"))
        for deb in debs:
            run_step(["dpkg", "-x", str(deb), str(sysroot)], f"unpacking {deb.name}")
        say("arm64 set-up: downloading aarch64 wheels (onnxruntime, numpy)")
        wheels = _install_wheels(sysroot / "opt" / "site")
        _precompile(sysroot)
        _fake_machine_files(sysroot)
        say("arm64 set-up: fetching qemu-plugin.h from Debian's qemu source package")
        _fetch_plugin_header(apt, scratch / "src", staged / "include")
        plugin = plugin_path(staged)
        say("arm64 set-up: checking the guest imports onnxruntime and the plugin sees its markers")
        _smoke_test(qemu_path, sysroot, plugin, scratch)
        manifest = {
            "format": SYSROOT_FORMAT,
            "cpu": CPU_MODEL,
            "midr": f"0x{CPU_MIDR:08x}",
            "qemu_version": qemu_version,
            "python": GUEST_PYTHON,
            "debs": [deb.name for deb in debs],
            "wheels": wheels,
            "setup_seconds": round(time.monotonic() - started, 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (staged / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if root.exists():  # stale, invalid or forced: move aside first so the rename below is atomic
            os.replace(root, work / "old")
        try:
            os.replace(staged, root)
        except BaseException:
            if (work / "old").exists():
                os.replace(work / "old", root)  # the previous set-up comes back rather than being deleted below
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _private_apt(scratch: Path) -> list[str]:
    """apt-get argv using only private state, with the host's Debian mirrors for arm64 and sources."""
    entries = _host_debian_sources()
    if not entries:
        raise EmulationError(
            "no Debian mirror for the host's own release in /etc/apt/sources.list(.d): arm64 emulation needs a "
            f"Debian host like CI (Debian 12); there, run: {SETUP_COMMAND}"
        )
    for sub in ("etc/sources.d", "lists/partial", "cache/archives/partial", "state"):
        (scratch / sub).mkdir(parents=True, exist_ok=True)
    (scratch / "state" / "status").write_text("")
    (scratch / "etc" / "empty.list").write_text("")
    stanzas = []
    for uri, suites, components, signed_by in entries:
        stanza = f"Types: deb deb-src\nURIs: {uri}\nSuites: {suites}\nComponents: {components}\nArchitectures: arm64\n"
        if signed_by:
            stanza += f"Signed-By: {signed_by}\n"
        stanzas.append(stanza)
    (scratch / "etc" / "sources.d" / "arm64.sources").write_text("\n".join(stanzas))
    settings = {
        "Dir::Etc::SourceList": scratch / "etc" / "empty.list",
        "Dir::Etc::SourceParts": scratch / "etc" / "sources.d",
        "Dir::Etc::Preferences": scratch / "etc" / "empty.list",
        "Dir::Etc::PreferencesParts": scratch / "etc" / "sources.d",
        "Dir::State::Lists": scratch / "lists",
        "Dir::State::status": scratch / "state" / "status",
        "Dir::Cache": scratch / "cache",
        "Dir::Cache::archives": scratch / "cache" / "archives",
        "APT::Architecture": "arm64",
        "APT::Architectures": "arm64",
        "pkgCacheGen::Essential": "none",  # an empty status would otherwise pull in all Essential packages
        "Debug::NoLocking": "true",
    }
    if os.geteuid() == 0:
        settings["APT::Sandbox::User"] = "root"  # _apt cannot enter a private dir under root's home
    config = scratch / "etc" / "apt.conf"
    config.write_text("".join(f'{key} "{value}";\n' for key, value in settings.items()))
    # -c is read after the host's apt.conf.d, so these settings win while host network options still apply.
    return ["apt-get", "-q", "-y", "-c", str(config)]


def _host_debian_sources() -> list[tuple[str, str, str, str]]:
    """(URIs, suites, components, Signed-By) of the host's enabled entries for its own Debian release."""
    codename = _os_release().get("VERSION_CODENAME", "")
    if not codename:
        return []
    stanzas: list[dict[str, str]] = []
    etc = Path("/etc/apt")
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        for block in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            key = None
            for line in block.splitlines():
                if line.startswith("#") or not line.strip():
                    continue
                if line[0].isspace() and key:  # continuation line (e.g. an inline key)
                    fields[key] += "\n" + line
                elif ":" in line:
                    key, _, value = line.partition(":")
                    key = key.strip().lower()
                    fields[key] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
                stanzas.append(fields)
    lists = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]
    for path in (p for p in lists if p.exists()):
        for line in path.read_text().splitlines():
            match = re.match(r"\s*deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s+(.+)", line)
            if match:
                options = dict(opt.split("=", 1) for opt in (match[1] or "").split() if "=" in opt)
                stanzas.append({"uris": match[2], "suites": match[3], "components": match[4], "signed-by": options.get("signed-by", "")})  # fmt: skip
    entries = []
    for fields in stanzas:
        suites = [s for s in fields.get("suites", "").split() if s == codename or s.startswith(codename + "-")]
        if suites and fields.get("uris"):
            entries.append(
                (fields["uris"], " ".join(suites), fields.get("components", "main"), fields.get("signed-by", ""))
            )
    return entries


def _os_release() -> dict[str, str]:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return {}
    return {k: v.strip('"') for k, _, v in (line.partition("=") for line in text.splitlines()) if v}


def _install_wheels(site: Path) -> dict[str, str]:
    """aarch64 wheels for the guest, pinned to the host's versions when PyPI has them for aarch64."""
    pinned = []
    for name in GUEST_WHEELS:
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(name)
    base = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
    base += ["--target", str(site), "--platform", "manylinux_2_28_aarch64", "--platform", "manylinux2014_aarch64"]
    base += ["--only-binary=:all:", "--python-version", GUEST_PYTHON, "--implementation", "cp"]
    try:
        run_step(base + pinned, "pip download of aarch64 wheels (host versions)")
    except EmulationError:
        shutil.rmtree(site, ignore_errors=True)
        run_step(base + list(GUEST_WHEELS), "pip download of aarch64 wheels")
    versions = {}
    for dist in importlib.metadata.distributions(path=[str(site)]):
        versions[dist.metadata["Name"].lower()] = dist.version
    return versions


def _precompile(sysroot: Path) -> None:
    # Without .pyc files the first emulated import compiles for many seconds; the guest never writes
    # them itself (-B), since a missing __pycache__ in the sysroot would fall through to the host's.
    host = sys.executable if sys.version_info[:2] == (3, 11) else shutil.which(f"python{GUEST_PYTHON}")
    if host is None:
        return
    dirs = [str(sysroot / "usr" / "lib" / f"python{GUEST_PYTHON}"), str(sysroot / "opt" / "site")]
    cmd = [host, "-m", "compileall", "-q", "-j", "0", "-s", str(sysroot), "-p", "/", *dirs]
    subprocess.run(cmd, capture_output=True, timeout=600, check=False)  # a few unparsable test files are fine


def _fake_machine_files(sysroot: Path) -> None:
    """ARM cpuinfo and a one-CPU sysfs matching -cpu, so ORT's detection is the same on every host."""
    implementer, variant = CPU_MIDR >> 24, (CPU_MIDR >> 20) & 0xF
    part, revision = (CPU_MIDR >> 4) & 0xFFF, CPU_MIDR & 0xF
    cpuinfo = (
        f"processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: {CPU_FEATURES}\nCPU implementer\t: 0x{implementer:02x}\n"
        f"CPU architecture: 8\nCPU variant\t: 0x{variant:x}\nCPU part\t: 0x{part:03x}\nCPU revision\t: {revision}\n\n"
    )
    files = {
        "proc/cpuinfo": cpuinfo,
        "sys/devices/system/cpu/possible": "0\n",
        "sys/devices/system/cpu/present": "0\n",
        "sys/devices/system/cpu/online": "0\n",
        "sys/devices/system/cpu/cpu0/regs/identification/midr_el1": f"0x{CPU_MIDR:016x}\n",
    }
    for rel, text in files.items():
        (sysroot / rel).parent.mkdir(parents=True, exist_ok=True)
        (sysroot / rel).write_text(text)
    # Paths missing from the sysroot fall through to the host: block the host's x86 site-packages.
    for rel in (f"usr/local/lib/python{GUEST_PYTHON}/dist-packages", "usr/lib/python3/dist-packages"):
        (sysroot / rel).mkdir(parents=True, exist_ok=True)


def _fetch_plugin_header(apt: list[str], src: Path, include: Path) -> None:
    """qemu-plugin.h from the source package matching the host's qemu-user (the plugin API must match)."""
    src.mkdir(parents=True)
    include.mkdir(parents=True)
    query = ["dpkg-query", "-W", "-f=${source:Version}", "qemu-user"]
    version = subprocess.run(query, capture_output=True, text=True, check=False).stdout.strip()
    attempts = [f"qemu={version}", "qemu"] if version else ["qemu"]
    for attempt in attempts:
        result = subprocess.run([*apt, "source", "--download-only", attempt], cwd=src, capture_output=True, text=True)
        if result.returncode == 0:
            break
    else:
        raise EmulationError(
            f"could not download Debian's qemu source package ({result.stderr.strip()[-200:]}); run: {SETUP_COMMAND}"
        )
    for tarball in sorted(src.glob("qemu_*.orig.tar.*")):
        with tarfile.open(tarball, "r|*") as tar:
            for member in tar:
                if member.name.endswith("include/qemu/qemu-plugin.h"):
                    (include / "qemu-plugin.h").write_bytes(tar.extractfile(member).read())
                    return
    raise EmulationError(f"qemu-plugin.h not found in Debian's qemu source package; run: {SETUP_COMMAND}")


def _smoke_test(qemu: str, sysroot: Path, plugin: Path, scratch: Path) -> None:
    counts = scratch / "smoke-counts.txt"
    code = "import os, onnxruntime\nfor c in (1, 2):\n    try: os.lseek(-1, 0x5348554600000000 + c, 0)\n    except OSError: pass\n"
    cmd = [*guest_command(qemu, sysroot, plugin, counts), "-c", code]
    run_step(cmd, "the emulated guest importing onnxruntime", env=guest_env(), timeout=300)
    if "\nrun " not in counts.read_text():
        raise EmulationError(f"the QEMU plugin saw no markers in the smoke test; run: {SETUP_COMMAND}")


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

"""One ssh call per measurement: its argv, the constant remote script, the tar it streams, its errors."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

from ... import environment
from ...errors import MachineError
from .. import device_runner
from .target import SshTarget

DEFAULT_CONNECT_TIMEOUT_S = 10
# What the device runs: the runner and the one shufflesearch module it imports, side by side.
RUNNER_FILES = {"device_runner.py": Path(device_runner.__file__), "environment.py": Path(environment.__file__)}
_REMOTE_DIR = re.compile(r"/(?:[A-Za-z0-9_.-]+/)*shufflesearch\.[A-Za-z0-9]{6,}")
_DIR_TAG = "shufflesearch-dir"
_EXIT_MKTEMP, _EXIT_TAR = 97, 98
# Runs under `sh -c` on the device; a constant: the python path and runner arguments arrive as "$@".
_REMOTE_SCRIPT = f"""set -u
d=$(mktemp -d "${{TMPDIR:-/tmp}}/shufflesearch.XXXXXXXXXX") || exit {_EXIT_MKTEMP}
trap 'rm -rf -- "$d"' EXIT
trap 'exit 143' HUP INT TERM
printf '{_DIR_TAG} %s\\n' "$d"
tar -xf - -C "$d" || exit {_EXIT_TAR}
cd "$d" || exit {_EXIT_TAR}
py=$1
shift
"$py" device_runner.py "$@"
"""


class SshError(MachineError):
    """Measuring over SSH failed; subclasses say why."""


class SshClientMissingError(SshError):
    """No `ssh` on this machine."""


class HostUnreachableError(SshError):
    """The host name does not resolve, nothing listens on the port, or the network is down."""


class AuthenticationError(SshError):
    """The device refused every key offered."""


class HostKeyError(SshError):
    """The device's host key is unknown or has changed: it is never accepted silently."""


class RemoteRuntimeError(SshError):
    """The device lacks python3, onnxruntime or tar, or the runner failed there."""


class SshTimeoutError(SshError):
    """A step did not finish within the time allowed."""


def bundle(files: dict[str, bytes]) -> bytes:
    """A tar of the runner, its environment module and the models: one stream over ssh, no scp/sftp needed on the device."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in {**{name: path.read_bytes() for name, path in RUNNER_FILES.items()}, **files}.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# ssh's own messages (exit status 255) -> our error classes; the first match wins.
_SSH_FAILURES = (
    ("host key verification failed", HostKeyError),
    ("remote host identification has changed", HostKeyError),
    ("permission denied", AuthenticationError),
    ("too many authentication failures", AuthenticationError),
    ("no supported authentication methods", AuthenticationError),
    ("could not resolve hostname", HostUnreachableError),
    ("connection refused", HostUnreachableError),
    ("connection timed out", HostUnreachableError),
    ("operation timed out", HostUnreachableError),
    ("no route to host", HostUnreachableError),
    ("network is unreachable", HostUnreachableError),
    ("connection reset", HostUnreachableError),
    ("connection closed", HostUnreachableError),
    ("kex_exchange_identification", HostUnreachableError),
)


class SshSession:
    """One ssh invocation per measurement: its argv, deadline and error translation."""

    def __init__(self, target: SshTarget, options: list[str], timeout_s: float) -> None:
        self.target, self.timeout_s = target, timeout_s
        self.deadline = time.monotonic() + timeout_s
        connect = max(1, min(DEFAULT_CONNECT_TIMEOUT_S, int(timeout_s)))
        # Before the user's options and config files: ssh keeps the first value it reads, so
        # neither an option nor a lax ~/.ssh/config (accept-new, no) can accept a key silently.
        self.argv = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-T", *options]
        self.argv += ["-o", f"ConnectTimeout={connect}"]  # a default: an explicit ConnectTimeout comes first
        if target.port is not None:
            self.argv += ["-p", str(target.port)]
        self.argv += ["--", target.destination]

    def budget(self) -> str:
        """Seconds the runner may time for: it stops by itself before ssh is cut off."""
        remaining = self.deadline - time.monotonic()
        return f"{max(1.0, min(remaining - 5, 0.8 * remaining)):.1f}"

    def measure(self, python: str, runner_args: list[str], bundle: bytes) -> dict[str, Any]:
        # The login shell only parses `sh -c CONSTANT sh ARGS...`; values reach the script as "$@".
        command = " ".join(shlex.quote(a) for a in ["sh", "-c", _REMOTE_SCRIPT, "sh", python, *runner_args])
        try:
            done = subprocess.run(
                [*self.argv, command], input=bundle, capture_output=True, timeout=self.timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            self._cleanup(exc.stdout or b"")
            raise SshTimeoutError(
                f"measuring on {self.where} did not finish within timeout_s={self.timeout_s:g}; raise it or lower runs"
            ) from None
        if done.returncode == 255:
            raise self._ssh_failure(done.stderr)
        if done.returncode in (_EXIT_MKTEMP, _EXIT_TAR):
            tool = "mktemp" if done.returncode == _EXIT_MKTEMP else "tar"
            raise RemoteRuntimeError(
                f"{tool} failed on {self.where} ({_last_line(done.stderr)}); the device needs a POSIX sh, mktemp and tar"
            )
        if done.returncode in (126, 127):
            raise RemoteRuntimeError(
                f"{python!r} is not runnable on {self.where}; install Python 3.8+ there (e.g. apt-get install python3) "
                "or pass python=/path/to/python"
            )
        return self._payload(done, python)

    def probe(self, python: str) -> None:
        command = " ".join(shlex.quote(a) for a in [python, "-c", "import onnxruntime"])
        try:
            done = subprocess.run([*self.argv, command], capture_output=True, timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise self._timeout("checking the device") from None
        if done.returncode == 255:
            raise self._ssh_failure(done.stderr)
        if done.returncode in (126, 127):
            raise RemoteRuntimeError(
                f"{python!r} is not runnable on {self.where}; install Python 3.8+ there (e.g. apt-get install python3) "
                "or pass python=/path/to/python"
            )
        if done.returncode != 0:
            raise RemoteRuntimeError(
                f"{python} on {self.where} cannot import onnxruntime ({_last_line(done.stderr)}); install it there "
                "(python3 -m pip install onnxruntime) or pass python=/path/to/python that has it"
            )

    def _payload(self, done: subprocess.CompletedProcess, python: str) -> dict[str, Any]:
        lines = done.stdout.decode(errors="replace").strip().splitlines()
        try:
            payload = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            raise RemoteRuntimeError(
                f"the runner on {self.where} printed no result (exit {done.returncode}): {_last_line(done.stderr)}"
            ) from None
        if payload.get("ok"):
            return payload
        if payload.get("error") == "missing-modules":
            raise RemoteRuntimeError(
                f"{python} on {self.where} {payload.get('message')}; or pass python=/path/to/python that has onnxruntime"
            )
        if payload.get("error") == "time-budget":
            raise SshTimeoutError(f"measuring on {self.where}: {payload.get('message')}; raise timeout_s or lower runs")
        raise RemoteRuntimeError(f"the runner on {self.where} failed: {payload.get('message', payload)}")

    def _cleanup(self, partial_stdout: bytes) -> None:
        # The remote trap removes the directory when the runner ends; after a cut connection
        # remove it from here too, so that nothing is left even if the runner lingers.
        for line in partial_stdout.decode(errors="replace").splitlines():
            name, _, path = line.partition(" ")
            if name == _DIR_TAG and _REMOTE_DIR.fullmatch(path) and "/../" not in path:
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    rm = " ".join(shlex.quote(a) for a in ["rm", "-rf", "--", path])
                    subprocess.run([*self.argv, rm], capture_output=True, timeout=30, check=False)

    @property
    def where(self) -> str:
        return self.target.url

    def _timeout(self, step: str) -> SshTimeoutError:
        return SshTimeoutError(
            f"{step} on {self.where} did not finish within timeout_s={self.timeout_s:g}; raise it or lower runs"
        )

    def _ssh_failure(self, stderr: bytes) -> SshError:
        text = stderr.decode(errors="replace").lower()
        t = self.target
        port = t.port or 22
        fragment, cls = next(((f, c) for f, c in _SSH_FAILURES if f in text), ("", SshError))
        if cls is SshError:
            return SshError(f"ssh to {self.where} failed: {_last_line(stderr)}")
        if cls is HostKeyError:
            return HostKeyError(
                f"the host key of {t.host} port {port} is unknown or changed ({fragment}); check the device's "
                f"fingerprint, then trust it once with `ssh -p {port} {t.destination}` or add it to known_hosts"
            )
        if cls is AuthenticationError:
            return AuthenticationError(
                f"{t.destination} port {port} refused key authentication ({fragment}); install your public key "
                f"with `ssh-copy-id -p {port} {t.destination}` or pass the right key via ssh_options ('-i', KEY)"
            )
        return HostUnreachableError(
            f"cannot reach {t.host} port {port} ({fragment}); check the address, that the device is on "
            "and that sshd listens on that port"
        )


def _last_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no error output"

"""Measured latency on a remote ARM device over SSH: ship the ONNX model and the runner, time it there.

The device needs sshd, a POSIX `sh` with `mktemp` and `tar`, and `python3` (3.8+) with
`onnxruntime` (`python3 -m pip install onnxruntime`). Authentication is the user's own SSH
setup (keys, agent, ~/.ssh/config, known_hosts) in batch mode: nothing is typed, and an
unknown or changed host key is an error, never accepted silently. One ssh call per
measurement streams a tar of the runner and the model into a `mktemp -d` directory, runs
the runner and removes the directory. The remote script is a constant run by `sh -c`; the
validated python path and the numbers reach it as positional arguments quoted with
`shlex.quote`, and local processes get argv lists, never a shell.

>>> target = SshTarget.parse("ssh://pi@192.168.1.20:2222")
>>> target.user, target.host, target.port
('pi', '192.168.1.20', 2222)
>>> measure_remote(get_preset("shufflenet_v1_x1_0_g3"), target)  # doctest: +SKIP
LatencyResult(median_ms=41.2, ..., target='ssh://pi@192.168.1.20:2222', backend='onnxruntime', ...)

`python` picks the device's interpreter (e.g. "/home/pi/venv/bin/python") and
`ssh_options` adds explicit ssh arguments, e.g. ("-i", "~/.ssh/pi_key", "-o",
"UserKnownHostsFile=/path/known_hosts"). ssh keeps the first value it reads for an option,
so BatchMode=yes and StrictHostKeyChecking=yes come before them (nothing can undo those)
and the other defaults after them (an explicit ConnectTimeout or -p wins). Options that
would turn host-key checking off are refused with a message that says what to do instead.
The rest are the user's own, passed as typed, like any ssh command line they run: those
that run a local command (ProxyCommand, LocalCommand, KnownHostsCommand, `Match exec` in a
-F file) run it on this machine with their rights, as ssh would.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import math
import re
import shlex
import shutil
import subprocess
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MachineError, UsageError
from ..spec import ShuffleNetSpec
from .measure import LatencyResult, check_outputs, check_settings, result_from_timing, torch_output_sample

RUNNER = Path(__file__).with_name("device_runner.py")
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_CONNECT_TIMEOUT_S = 10

_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")  # POSIX portable user names, no leading "-"
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?")  # also covers ~/.ssh/config aliases
_URL = re.compile(r"ssh://(?:(?P<user>[^@/]*)@)?(?P<host>\[[^\]/]*\]|[^:/@\[\]]*)(?::(?P<port>[^/]*))?")
_PYTHON = re.compile(r"/?[A-Za-z0-9_+.][A-Za-z0-9_+.-]*(?:/[A-Za-z0-9_+.-]+)*")  # no leading "-"
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


class SshTargetError(UsageError):
    """A bad target URL, remote python path or ssh option: rejected before any process runs."""


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


@dataclass(frozen=True)
class SshTarget:
    """A validated `ssh://[user@]host[:port]`; a missing user or port is left to ~/.ssh/config."""

    host: str
    user: str | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        shown = f"host={self.host!r}, user={self.user!r}, port={self.port!r}"
        if self.user is not None and not (isinstance(self.user, str) and _USER.fullmatch(self.user)):
            raise SshTargetError(f"ssh user {self.user!r} in ({shown}) must match {_USER.pattern}; e.g. pi")
        if not _valid_host(self.host):
            raise SshTargetError(f"ssh host {self.host!r} must be a host name, alias or IP address; e.g. 192.168.1.20")
        if self.port is not None and not (type(self.port) is int and 1 <= self.port <= 65535):
            raise SshTargetError(f"ssh port {self.port!r} must be an integer in [1, 65535]; e.g. 22")

    @classmethod
    def parse(cls, url: str) -> SshTarget:
        """Parse `ssh://[user@]host[:port]` strictly: anything else raises SshTargetError."""
        match = _URL.fullmatch(url) if isinstance(url, str) else None
        host = match["host"] if match else ""
        port = match["port"] if match else None
        if not match or not host or (port is not None and not re.fullmatch(r"[0-9]{1,5}", port)):
            raise SshTargetError(
                f"target {url!r} is not ssh://[user@]host[:port] with a plain user, a host name or IP and a port "
                "in [1, 65535]; e.g. ssh://pi@192.168.1.20:22"
            )
        try:
            return cls(host.strip("[]"), match["user"], int(port) if port is not None else None)
        except SshTargetError as exc:
            raise SshTargetError(f"target {url!r}: {exc}") from None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"ssh://{user}{host}{port}"

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


def _valid_host(host: Any) -> bool:
    if not isinstance(host, str) or not 0 < len(host) <= 253:
        return False
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)  # scope ids ("%eth0") are refused below
        except ValueError:
            return False
        return "%" not in host
    return all(_LABEL.fullmatch(label) for label in host.split("."))


def measure_remote(
    spec_or_onnx: ShuffleNetSpec | str | Path,
    target: SshTarget | str,
    threads: int = 1,
    runs: int = 50,
    warmup: int = 10,
    python: str = "python3",
    ssh_options: Sequence[str] | str = (),
    timeout_s: float = DEFAULT_TIMEOUT_S,
    seed: int = 0,
) -> LatencyResult:
    """ONNX Runtime latency on `target`, with the device's own machine description.

    A spec is exported with seeded weights and the device's output is checked against
    PyTorch's before the result is returned; an .onnx path is timed as it is.
    """
    target = target if isinstance(target, SshTarget) else SshTarget.parse(target)
    check_settings("onnxruntime", threads, runs, warmup)
    session = _open_session(target, python, ssh_options, seed, timeout_s)
    model_bytes, expected, label, resolution = _model_payload(spec_or_onnx, seed)
    args = ["model.onnx", *_runner_args(session, threads, runs, warmup, seed)]
    payload = session.measure(python, args, _bundle({"model.onnx": model_bytes}))

    diff = check_outputs(expected, payload["output_sample"], target.url) if expected is not None else None
    return result_from_timing(
        payload["times_ms"],
        runs=runs,
        warmup=warmup,
        target=target.url,
        backend="onnxruntime",
        threads=threads,
        resolution=resolution or int(payload["input_shape"][-1]),
        machine=payload["machine"],
        model=label,
        max_abs_diff=diff,
    )


def time_models_remote(
    files: dict[str, bytes],
    manifest: dict[str, Any],
    target: SshTarget | str,
    threads: int = 1,
    runs: int = 50,
    warmup: int = 10,
    clock: str = "wall",
    python: str = "python3",
    ssh_options: Sequence[str] | str = (),
    timeout_s: float = DEFAULT_TIMEOUT_S,
    seed: int = 0,
) -> dict[str, Any]:
    """Time many ONNX models on `target` in ONE ssh call (the runner's manifest mode).

    `files` maps plain file names to bytes (models, no weights needed: see device_runner);
    returns the runner's payload: {"results": {name: {"times_ms": [...], ...}}, "machine": {...}, ...}.
    """
    target = target if isinstance(target, SshTarget) else SshTarget.parse(target)
    check_settings("onnxruntime", threads, runs, warmup)
    if clock not in ("wall", "cpu") or (clock == "cpu" and threads != 1):
        raise SshTargetError(f"clock={clock!r} must be 'wall', or 'cpu' with threads=1 (it times one thread)")
    for name in files:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) or name in ("device_runner.py", "manifest.json"):
            raise SshTargetError(f"file name {name!r} must be a plain name other than device_runner.py/manifest.json")
    session = _open_session(target, python, ssh_options, seed, timeout_s)
    bundle = _bundle({**files, "manifest.json": json.dumps(manifest).encode()})
    args = ["--manifest", "manifest.json", "--clock", clock, *_runner_args(session, threads, runs, warmup, seed)]
    return session.measure(python, args, bundle)


def check_remote(
    target: SshTarget | str, python: str = "python3", ssh_options: Sequence[str] | str = (), timeout_s: float = 60.0
) -> None:
    """Reach `target` and import onnxruntime there, in one short ssh call: fail before minutes of local work."""
    target = target if isinstance(target, SshTarget) else SshTarget.parse(target)
    _open_session(target, python, ssh_options, 0, min(timeout_s, 60.0)).probe(python)


def _open_session(target: SshTarget, python: str, ssh_options: Sequence[str] | str, seed: int, timeout_s: float):
    if not isinstance(python, str) or not _PYTHON.fullmatch(python):
        raise SshTargetError(f"python={python!r} must be a command name or path without spaces; e.g. /usr/bin/python3")
    options = _check_options(ssh_options, target)
    if type(seed) is not int:
        raise SshTargetError(f"seed={seed!r} must be an integer; e.g. 0")
    if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s < math.inf):
        raise SshTargetError(f"timeout_s={timeout_s!r} must be a positive number of seconds; e.g. 300")
    if shutil.which("ssh") is None:
        raise SshClientMissingError(
            "no `ssh` client on this machine; install it (Debian: apt-get install openssh-client)"
        )
    return _Session(target, options, timeout_s)


def _runner_args(session: _Session, threads: int, runs: int, warmup: int, seed: int) -> list[str]:
    args = ["--threads", threads, "--runs", runs, "--warmup", warmup, "--seed", seed, "--max-seconds", session.budget()]
    return [str(a) for a in args]


def _check_options(ssh_options: Sequence[str] | str, target: SshTarget) -> list[str]:
    """The options as a list, read the way ssh's getopt reads them: options only, host keys checked."""
    try:
        options = shlex.split(ssh_options) if isinstance(ssh_options, str) else list(ssh_options)
    except ValueError as exc:  # an unclosed quote
        raise SshTargetError(f'ssh options {ssh_options!r}: {exc}; e.g. "-i ~/.ssh/key -o Port=2222"') from None
    for option in options:
        if not isinstance(option, str) or "\0" in option or "\n" in option:
            raise SshTargetError(f"ssh option {option!r} must be a string without NUL or newline; e.g. -i ~/.ssh/key")
    words = iter(options)
    for word in words:
        # A bare word or "--" would end ssh's options: our own arguments would become the destination.
        if not word.startswith("-") or word in ("-", "--"):
            raise SshTargetError(
                f"ssh option {word!r} is not an option: the device comes from the target URL; e.g. -i ~/.ssh/key"
            )
        for at, letter in enumerate(word[1:], start=2):  # getopt: "-To Key=value" is -T then -o "Key=value"
            if letter in _SSH_FLAGS:
                continue
            if letter not in _SSH_VALUED:
                raise SshTargetError(f"ssh option {word!r}: -{letter} is not an OpenSSH option; see `man ssh`")
            value = word[at:] or next(words, None)
            if value is None:
                raise SshTargetError(f"ssh option -{letter} needs a value; e.g. -o ConnectTimeout=30")
            if letter == "o":
                _check_config_option(value, target)
            break
    return options


# ssh's getopt letters. -P is a flag in OpenSSH 9.2 but takes a tag in later releases: read as a flag, "-P TAG"
# is refused (TAG is a bare word), never misread.
_SSH_FLAGS = frozenset("1246AaCfGgKkMNnPqsTtVvXxYy")
_SSH_VALUED = frozenset("BbcDEeFIiJLlmOopQRSWw")


def _check_config_option(line: str, target: SshTarget) -> None:
    """Refuse an `-o` line that would accept unknown host keys, however ssh's config parser may spell it.

    ssh's readconf drops quotes (even mid-word: Strict"HostKeyChecking"), splits the keyword
    at blanks or one "=" and ignores its case. Dropping every quote and backslash and
    splitting at any run of blanks and "=" reads each spelling ssh accepts as the same
    keyword and value, plus some that ssh rejects anyway: the check can be too strict,
    never too lax. Our StrictHostKeyChecking=yes comes first and wins regardless; this
    check turns a silently ignored choice into a message.
    """
    plain = re.sub(r"[\"'\\]", "", line).strip(" \t\r\n\f\v=")
    keyword, value = [*re.split(r"[\s=]+", plain.lower(), maxsplit=1), ""][:2]
    port = target.port or 22
    fix = (
        f"compare `ssh-keyscan -p {port} {target.host} | ssh-keygen -lf -` with `ssh-keygen -lf "
        "/etc/ssh/ssh_host_ed25519_key.pub` run on the device, then append that ssh-keyscan output to ~/.ssh/known_hosts"
    )
    if keyword == "stricthostkeychecking" and value not in ("yes", "true", "ask"):
        raise SshTargetError(f"ssh option {line!r} would accept an unknown host key; instead {fix}")
    # With checking on, a known_hosts of /dev/null can only fail, on every host: say so now.
    if keyword == "userknownhostsfile" and all(name in ("/dev/null", "none") for name in value.split()):
        raise SshTargetError(f"ssh option {line!r} trusts no host key; name a real known_hosts file, or {fix}")


def _model_payload(spec_or_onnx: Any, seed: int) -> tuple[bytes, list[float] | None, str, int | None]:
    """(ONNX bytes, PyTorch's output sample or None, label, resolution or None)."""
    if isinstance(spec_or_onnx, ShuffleNetSpec):
        from ..export import onnx_bytes

        data, model = onnx_bytes(spec_or_onnx, seed)
        res = spec_or_onnx.resolution
        expected = torch_output_sample(model, (1, spec_or_onnx.in_channels, res, res), seed)
        return data, expected, spec_or_onnx.label, res
    path = Path(spec_or_onnx)
    if not path.is_file():
        raise SshTargetError(f"ONNX model {str(path)!r} does not exist; pass a spec or an exported .onnx file")
    return path.read_bytes(), None, path.name, None


def _bundle(files: dict[str, bytes]) -> bytes:
    """A tar of the runner and the models: one stream over ssh, no scp/sftp needed on the device."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in {"device_runner.py": RUNNER.read_bytes(), **files}.items():
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


class _Session:
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

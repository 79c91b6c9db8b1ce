"""Measured latency on a remote ARM device over SSH: ship the ONNX model and the runner, time it there.

The device needs sshd, a POSIX `sh` with `mktemp` and `tar`, and `python3` (3.8+) with
`onnxruntime` (`python3 -m pip install onnxruntime`). Authentication is the user's own SSH
setup (keys, agent, ~/.ssh/config, known_hosts) in batch mode: nothing is typed, and an
unknown or changed host key is an error, never accepted silently. One ssh call per
measurement streams a tar of the runner (with `environment.py`) and the model into a `mktemp -d` directory, runs
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

from .remote import DEFAULT_TIMEOUT_S, check_remote, measure_remote, time_models_remote
from .session import (
    AuthenticationError,
    HostKeyError,
    HostUnreachableError,
    RemoteRuntimeError,
    SshClientMissingError,
    SshError,
    SshTimeoutError,
)
from .target import SshTarget, SshTargetError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "AuthenticationError",
    "HostKeyError",
    "HostUnreachableError",
    "RemoteRuntimeError",
    "SshClientMissingError",
    "SshError",
    "SshTarget",
    "SshTargetError",
    "SshTimeoutError",
    "check_remote",
    "measure_remote",
    "time_models_remote",
]

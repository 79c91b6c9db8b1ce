"""The user's ssh options, read the way ssh reads them: any that would accept an unknown host key is refused."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence

from .target import SshTarget, SshTargetError

# ssh's getopt letters. -P is a flag in OpenSSH 9.2 but takes a tag in later releases: read as a flag, "-P TAG"
# is refused (TAG is a bare word), never misread.
_SSH_FLAGS = frozenset("1246AaCfGgKkMNnPqsTtVvXxYy")
_SSH_VALUED = frozenset("BbcDEeFIiJLlmOopQRSWw")


def check_ssh_options(ssh_options: Sequence[str] | str, target: SshTarget) -> list[str]:
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
    _check_with_ssh(options, target)
    return options


def _check_with_ssh(options: list[str], target: SshTarget) -> None:
    """Let ssh itself read the options, offline (`ssh -G` connects to nothing): what it refuses is a usage error.

    A bad port (-p 0, -p 99999, -o Port=abc), an unknown option or cipher, a malformed
    forwarding: ssh exits 255 before connecting, which would otherwise read as an unreachable
    device (exit 1). Without an ssh client the session says so later.
    """
    if not options or shutil.which("ssh") is None:
        return
    port = ["-p", str(target.port)] if target.port is not None else []
    try:
        done = subprocess.run(["ssh", "-G", *options, *port, "--", target.destination], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace", timeout=15, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):  # a slow ~/.ssh/config Match exec: the real call decides
        return
    if done.returncode == 255:
        said = [line for line in done.stderr.splitlines() if line.strip()]
        reason = " ".join(said[-1].split()) if said else "no reason given"
        raise SshTargetError(f"ssh options {shlex.join(options)!r}: ssh refuses them ({reason}); see `man ssh`, "
                             'e.g. "-i ~/.ssh/key -o Port=2222"')  # fmt: skip


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

"""Where to measure: a validated `ssh://[user@]host[:port]`, refused before any process runs."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from ...errors import UsageError

_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")  # POSIX portable user names, no leading "-"
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?")  # also covers ~/.ssh/config aliases
_URL = re.compile(r"ssh://(?:(?P<user>[^@/]*)@)?(?P<host>\[[^\]/]*\]|[^:/@\[\]]*)(?::(?P<port>[^/]*))?")


class SshTargetError(UsageError):
    """A bad target URL, remote python path or ssh option: rejected before any process runs."""


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

"""Real servers for tests: a throwaway PostgreSQL cluster on loopback.

In CI (CI=true) a missing server binary fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def require(condition: bool, why: str) -> None:
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI must run this test: .ci/run installs it via scripts/install-system-deps)")
    pytest.skip(why)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    """initdb + pg_ctl in a temporary directory; trust auth on 127.0.0.1 only."""

    def __init__(self) -> None:
        bindir = postgres_bin()
        require(bindir is not None, "PostgreSQL server binaries not found (Debian package postgresql)")
        # Directly under /tmp: pytest's tmp_path is private to root, and the server runs as postgres.
        self.root = Path(tempfile.mkdtemp(prefix="shufflesearch-pg-"))
        self.bindir, self.port, self.data = bindir, free_port(), self.root / "data"
        # initdb refuses to run as root: run the cluster as the postgres system user.
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")

    def _run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, *args], check=True, capture_output=True, text=True, **kwargs)

    def start(self) -> str:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-t", "60",
                  "-l", str(self.root / "log"), "start")  # fmt: skip
        self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "nas")
        return f"postgresql://postgres@127.0.0.1:{self.port}/nas"

    def stop(self) -> None:
        subprocess.run([*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


def wait_for(predicate, timeout_s: float, poll_s: float = 0.2, what: str = "condition", process=None):
    """Poll `predicate` until it is truthy; a watched `process` that exits first fails at once, with its stderr."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the process exited ({process.returncode}) while we waited for {what}: "
                                 f"{(err or '')[-2000:]}{(out or '')[-500:]}")  # fmt: skip
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")

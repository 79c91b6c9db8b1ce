"""A real OpenSSH server on loopback for tests: the "device" is this machine, reached with a throwaway key.

Outside CI a missing OpenSSH skips the test; under CI=true it fails (servers.require).
"""

from __future__ import annotations

import contextlib
import getpass
import glob
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from servers import free_port, require

SSHD = "/usr/sbin/sshd"


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)
    return path


def leftovers() -> set[str]:
    """The runner's remote temp dirs currently on this machine (each must be gone after a call)."""
    return set(glob.glob(os.path.join(os.environ.get("TMPDIR", "/tmp"), "shufflesearch.*")))


@contextlib.contextmanager
def start_sshd(d: Path) -> Iterator[SimpleNamespace]:
    """sshd on 127.0.0.1 with keys, known_hosts variants and hermetic client options, all under `d`."""
    require(
        os.path.exists(SSHD) and bool(shutil.which("ssh")) and bool(shutil.which("ssh-keygen")),
        "OpenSSH is not installed (apt-get install openssh-server openssh-client)",
    )
    host_key, client_key, stranger_key = _keygen(d / "host_key"), _keygen(d / "client_key"), _keygen(d / "stranger")
    other_host_key = _keygen(d / "other_host_key")
    (d / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
    port = free_port()
    config = d / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\nAuthorizedKeysFile {d}/authorized_keys\n"
        f"PidFile {d}/sshd.pid\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nAuthenticationMethods publickey\n"
    )
    if os.geteuid() == 0:  # sshd refuses to start without its privilege-separation dir (the service makes it)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = open(d / "sshd.log", "wb")  # noqa: SIM115 (open for the server's lifetime)
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"sshd did not start: {(d / 'sshd.log').read_text()[-500:]}")
            time.sleep(0.1)

    def key_line(key: Path) -> str:
        return f"[127.0.0.1]:{port} " + " ".join(key.with_suffix(".pub").read_text().split()[:2]) + "\n"

    (d / "known_hosts").write_text(key_line(host_key))
    (d / "wrong_known_hosts").write_text(key_line(other_host_key))
    (d / "empty_known_hosts").write_text("")

    def options(key: Path = client_key, known_hosts: str = "known_hosts") -> list[str]:
        # Hermetic: no ~/.ssh/config, no agent, only this key and this known_hosts.
        return [
            "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
            "-o", f"UserKnownHostsFile={d / known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
        ]  # fmt: skip

    try:
        yield SimpleNamespace(url=f"ssh://{getpass.getuser()}@127.0.0.1:{port}", port=port, dir=d, options=options,
                              stranger_key=stranger_key)  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()

"""Latency over SSH against a real OpenSSH server on loopback that this file starts itself.

The "device" is this machine: the remote python is this interpreter (it has onnxruntime).
Outside CI the server tests skip only when OpenSSH is not installed; under CI=true they fail.
The server itself lives in tests/sshd.py (tests/test_lut.py builds a table through it too).
"""

import getpass
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from servers import free_port, require
from sshd import leftovers, start_sshd

from shufflesearch.export import export_onnx
from shufflesearch.latency import ssh
from shufflesearch.latency.ssh import (
    AuthenticationError,
    HostKeyError,
    HostUnreachableError,
    RemoteRuntimeError,
    SshTarget,
    SshTargetError,
    SshTimeoutError,
    measure_remote,
)
from shufflesearch.latency.ssh.options import check_ssh_options
from shufflesearch.latency.ssh.session import SshSession
from shufflesearch.spec import ShuffleNetSpec

TINY = ShuffleNetSpec(groups=2, scale=0.25, repeats=(1, 1, 1), resolution=32)
HOSTILE = [
    "ssh://a;rm -rf /@host",
    "ssh://user@host$(id)",
    "ssh://-oProxyCommand=x@h",
    "ssh://user@-oProxyCommand=x",
    "ssh://user@host:22;id",
    "ssh://user@host`id`",
    "ssh://us er@host",
    "ssh://user@host\nid",
    "ssh://user@host/path",
    "ssh://user@host:0",
    "ssh://user@host:65536",
    "ssh://user@host:-1",
    "ssh://user@[::1%eth0]",
    "ssh://user@",
    "ssh://@host",
    "http://user@host",
    "user@host",
    "ssh://user@host:22?x=1",
    "ssh://user@host..com",
]


# -- parsing: no process ever runs ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "user", "host", "port"),
    [
        ("ssh://pi@192.168.1.20", "pi", "192.168.1.20", None),
        ("ssh://pi@raspberrypi.local:2222", "pi", "raspberrypi.local", 2222),
        ("ssh://board", None, "board", None),
        ("ssh://ci_user.2@my-board_7:65535", "ci_user.2", "my-board_7", 65535),
        ("ssh://root@[::1]:22", "root", "::1", 22),
    ],
)
def test_parse_valid_targets(url, user, host, port):
    target = SshTarget.parse(url)
    assert (target.user, target.host, target.port) == (user, host, port)
    assert target.url == url and SshTarget.parse(target.url) == target


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_targets_are_rejected_before_any_process(url, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError(f"a process was started for {url!r}: {args}")

    monkeypatch.setattr(subprocess, "run", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    with pytest.raises(SshTargetError) as info:
        measure_remote(TINY, url)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [{"python": "python3; id"}, {"python": "$(id)"}, {"python": "py thon"}, {"python": "-c"}, {"timeout_s": 0}],
)
def test_hostile_settings_are_rejected_before_any_process(kwargs, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a process was started"))
    with pytest.raises(SshTargetError):
        measure_remote(TINY, "ssh://pi@board", **kwargs)


@given(st.text(max_size=40))
def test_any_accepted_target_is_shell_inert(tail):
    try:
        target = SshTarget.parse("ssh://" + tail)
    except SshTargetError:
        return
    for part in (target.user or "", target.host):
        assert re.fullmatch(r"[A-Za-z0-9_.:-]*", part) and not part.startswith("-")
    assert target.port is None or 1 <= target.port <= 65535


# -- a real sshd on loopback --------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    with start_sshd(tmp_path_factory.mktemp("sshd")) as server:
        server.onnx = server.dir / "tiny.onnx"
        export_onnx(TINY, server.onnx)
        yield server


def test_real_measurement_over_ssh(sshd):
    before = leftovers()
    result = measure_remote(TINY, sshd.url, runs=5, warmup=1, python=sys.executable, ssh_options=sshd.options())
    assert (result.target, result.backend, result.threads, result.resolution) == (sshd.url, "onnxruntime", 1, 32)
    assert len(result.times_ms) == result.runs == 5
    assert 0 < result.min_ms <= result.median_ms <= result.p90_ms < 1000
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4  # the device ran the spec's network
    assert result.machine["arch"] == platform.machine() and "onnxruntime" in result.machine["versions"]
    assert leftovers() <= before  # the remote temp dir is gone


def test_onnx_file_over_ssh(sshd):
    result = measure_remote(sshd.onnx, sshd.url, threads=2, runs=3, warmup=0, python=sys.executable,
                            ssh_options=sshd.options())  # fmt: skip
    assert (result.model, result.resolution, result.threads, result.max_abs_diff) == ("tiny.onnx", 32, 2, None)


def test_wrong_key_is_an_authentication_error(sshd):
    with pytest.raises(AuthenticationError, match="ssh-copy-id"):
        measure_remote(sshd.onnx, sshd.url, runs=3, python=sys.executable, ssh_options=sshd.options(sshd.stranger_key))


def test_closed_port_is_unreachable(sshd):
    url = SshTarget("127.0.0.1", getpass.getuser(), free_port()).url
    with pytest.raises(HostUnreachableError, match="connection refused"):
        measure_remote(sshd.onnx, url, runs=3, python=sys.executable, ssh_options=sshd.options())


@pytest.mark.parametrize("known_hosts", ["empty_known_hosts", "wrong_known_hosts"])
def test_untrusted_host_key_is_never_accepted(sshd, known_hosts):
    path = sshd.dir / known_hosts
    before = path.read_text()
    with pytest.raises(HostKeyError, match="known_hosts"):
        measure_remote(sshd.onnx, sshd.url, runs=3, python=sys.executable,
                       ssh_options=sshd.options(known_hosts=known_hosts))  # fmt: skip
    assert path.read_text() == before  # nothing was added behind the user's back


def test_remote_python_without_onnxruntime_says_how_to_fix(sshd, tmp_path):
    bare = tmp_path / "bare-python"  # a device Python without site-packages
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    with pytest.raises(RemoteRuntimeError, match="pip install onnxruntime") as info:
        measure_remote(sshd.onnx, sshd.url, runs=3, python=str(bare), ssh_options=sshd.options())
    assert "\n" not in str(info.value)


def test_remote_without_python_says_how_to_fix(sshd):
    with pytest.raises(RemoteRuntimeError, match=r"not runnable.*install Python"):
        measure_remote(sshd.onnx, sshd.url, runs=3, python="/nonexistent/python3", ssh_options=sshd.options())


def test_device_check_before_long_work(sshd, tmp_path):
    ssh.check_remote(sshd.url, sys.executable, sshd.options())  # reachable, with onnxruntime: no error
    bare = tmp_path / "bare-python"
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    with pytest.raises(RemoteRuntimeError, match="pip install onnxruntime"):
        ssh.check_remote(sshd.url, str(bare), sshd.options())
    url = SshTarget("127.0.0.1", getpass.getuser(), free_port()).url
    started = time.monotonic()
    with pytest.raises(HostUnreachableError, match="connection refused"):
        ssh.check_remote(url, sys.executable, sshd.options())
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_runner_stops_itself_within_the_timeout(sshd):
    before = leftovers()
    with pytest.raises(SshTimeoutError, match="timeout_s"):
        measure_remote(sshd.onnx, sshd.url, runs=10**6, warmup=0, python=sys.executable,
                       ssh_options=sshd.options(), timeout_s=4)  # fmt: skip
    assert leftovers() <= before


@pytest.mark.slow
def test_hung_device_is_cut_off_and_cleaned_up(sshd, tmp_path):
    hang = tmp_path / "hang-python"  # a device that never answers
    hang.write_text("#!/bin/sh\nsleep 30\n")
    hang.chmod(0o755)
    before = leftovers()
    start = time.monotonic()
    with pytest.raises(SshTimeoutError, match="did not finish"):
        measure_remote(sshd.onnx, sshd.url, runs=3, python=str(hang), ssh_options=sshd.options(), timeout_s=2)
    assert time.monotonic() - start < 20  # cut off at the timeout, not after the device's 30 s
    assert leftovers() <= before


def test_ssh_argv_keeps_host_key_checking_and_batch_mode():
    session = SshSession(SshTarget("board", "pi", 2200), ["-i", "key"], timeout_s=60)
    argv = session.argv
    # ssh keeps the first value it reads: ours that must hold come first, the defaults after the user's.
    assert argv[:5] == ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    assert argv.index("-i") < argv.index("ConnectTimeout=10") < argv.index("-p")
    assert argv[-2:] == ["--", "pi@board"] and argv[argv.index("-p") + 1] == "2200"


# Spellings ssh reads as "do not check host keys" (each is checked against `ssh -G` below).
LAX_OPTIONS = [
    ["-o", 'StrictHostKeyChecking="no"'],
    ["-o", "StrictHostKeyChecking='no'"],
    ["-oStrictHostKeyChecking=no"],
    ["-o", "stricthostkeychecking = accept-new"],
    ["-o", '"StrictHostKeyChecking" off'],
    ["-o", 'Strict"HostKeyChecking" NO'],
    ["-o", "StrictHostKeyChecking n'o'"],
    ["-o", "  =StrictHostKeyChecking\tfalse"],
    ["-To", "StrictHostKeyChecking no # a comment"],
    ["-qoStrictHostKeyChecking=accept-new"],
]


def ssh_config(argv: list[str]) -> dict[str, str]:
    """What ssh would use for `argv` (`ssh -G` prints it and connects to nothing)."""
    require(bool(shutil.which("ssh")), "OpenSSH client not installed (Debian package openssh-client)")
    done = subprocess.run([argv[0], "-G", *argv[1:]], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, (argv, done.stderr)
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


@pytest.mark.parametrize("options", LAX_OPTIONS, ids=lambda o: " ".join(o))
def test_lax_host_key_options_are_refused_and_could_not_win_anyway(options):
    assert ssh_config(["ssh", *options, "board"])["stricthostkeychecking"] in ("false", "accept-new")  # lax to ssh
    with pytest.raises(SshTargetError, match=r"ssh-keyscan -p 2200 board .*~/\.ssh/known_hosts") as info:
        check_ssh_options(options, SshTarget("board", "pi", 2200))
    assert "\n" not in str(info.value)
    # Unchecked on purpose: the argv alone must keep checking on, whatever the refusal misses.
    argv = SshSession(SshTarget("board", "pi", 2200), options, timeout_s=60).argv
    config = ssh_config(argv)
    assert (config["stricthostkeychecking"], config["batchmode"], config["port"]) == ("true", "yes", "2200")


def test_a_lax_config_file_cannot_turn_checking_off(tmp_path):
    lax = tmp_path / "lax_config"
    lax.write_text("StrictHostKeyChecking no\nBatchMode no\nConnectTimeout 99\n")
    assert check_ssh_options(["-F", str(lax)], SshTarget("board"))  # allowed: command-line options beat it
    config = ssh_config(SshSession(SshTarget("board"), ["-F", str(lax)], timeout_s=60).argv)
    assert (config["stricthostkeychecking"], config["batchmode"], config["connecttimeout"]) == ("true", "yes", "10")


@pytest.mark.parametrize(
    "options",
    [
        ["-o", "StrictHostKeyChecking=yes"],
        ["-o", 'StrictHostKeyChecking "ask"'],
        ["-o", "UserKnownHostsFile=/etc/devices/known_hosts"],
        ["-o", "GlobalKnownHostsFile=/dev/null"],  # trusts fewer keys, not more
        ["-F", "/dev/null", "-i", "~/.ssh/pi key", "-vp", "2222", "-o", "ConnectTimeout 30"],
        ["-o", "ProxyCommand=ssh -W %h:%p jump"],  # the user's own command, as if typed to ssh
    ],
)
def test_ordinary_options_pass_as_given(options):
    assert check_ssh_options(options, SshTarget("board")) == options
    assert ssh_config(SshSession(SshTarget("board"), options, timeout_s=60).argv)["stricthostkeychecking"] == "true"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["-o", "UserKnownHostsFile=/dev/null"], "trusts no host key"),
        (["-o", "userknownhostsfile 'none'"], "trusts no host key"),
        (["otherhost"], "not an option"),  # would become the destination, ours the remote command
        (["-i", "key", "--"], "not an option"),
        (["-Z"], "not an OpenSSH option"),
        (["-i"], "needs a value"),
        ("-o 'unclosed", "No closing quotation"),
    ],
)
def test_odd_options_are_refused_with_one_line(options, message):
    with pytest.raises(SshTargetError, match=message) as info:
        check_ssh_options(options, SshTarget("board"))
    assert "\n" not in str(info.value)


def test_cli_refuses_a_quoted_lax_option_with_exit_2(tmp_path):
    cli = str(Path(sys.executable).with_name("shufflesearch"))
    done = subprocess.run([cli, "latency", "--target", "ssh://pi@board", "--ssh-options",
                           """-o 'StrictHostKeyChecking="no"'"""], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "ssh-keyscan -p 22 board" in done.stderr and "known_hosts" in done.stderr

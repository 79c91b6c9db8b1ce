"""`shufflesearch data get` against a real HTTP server on loopback serving the published Fashion-MNIST files.

The published files are rebuilt byte for byte from Debian's dataset-fashion-mnist: Debian keeps each
file's deflate stream but re-wraps it in a gzip header without the file name and with its own date.
Restoring upstream's header (name, modification time) gives back the file the Fashion-MNIST README
publishes; `upstream_files` proves it against the published SHA-256 before any test uses it, so the
server sends exactly what github.com or the S3 mirror would.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import struct
import tarfile
import threading
import typing

import pytest
import torch
from servers import require

from shufflesearch import cli
from shufflesearch.accuracy.datasets import DatasetError, download, fashion_mnist, load_dataset
from shufflesearch.accuracy.datasets.download import DOWNLOADS, fetch_dataset

# Upstream's gzip headers, read off the published files: the MD5s the Fashion-MNIST README lists match
# these bytes + Debian's deflate streams (and so do the SHA-256s in download.DOWNLOADS).
UPSTREAM_MTIME = {"train": 1504176606, "t10k": 1504176627}  # 2017-08-31, when the files were made
FILES = [f.name for f in DOWNLOADS["fashion-mnist"].files]
DEBIAN = fashion_mnist.FASHION_MNIST_DIR  # read before any test points the loader elsewhere


@functools.cache
def upstream_files() -> dict[str, bytes]:
    require(DEBIAN.is_dir(), f"Debian's dataset-fashion-mnist is not installed ({DEBIAN})")
    published = {f.name: f.sha256 for f in DOWNLOADS["fashion-mnist"].files}
    rebuilt = {}
    for name in FILES:
        debian = (DEBIAN / name).read_bytes()
        assert debian[:4] == b"\x1f\x8b\x08\x00", f"{name}: Debian's gzip header changed; rebuild the recipe"
        mtime = UPSTREAM_MTIME[name.split("-")[0]]
        # magic, deflate, FNAME flag, mtime, XFL 0, OS 3 (Unix), the NUL-ended name, then Debian's stream.
        header = (
            b"\x1f\x8b\x08\x08" + struct.pack("<I", mtime) + b"\x00\x03" + name.removesuffix(".gz").encode() + b"\0"
        )
        rebuilt[name] = header + debian[10:]
        assert hashlib.sha256(rebuilt[name]).hexdigest() == published[name], f"{name} is not the published file"
    return rebuilt


class FileServer(http.server.ThreadingHTTPServer):
    """Serves `files` by name with HTTP ranges; `cut_at[name]` drops the connection after that many bytes."""

    def __init__(self, files: dict[str, bytes], ranges: bool = True, lengths: bool = True) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files, self.ranges, self.lengths, self.cut_at, self.requests = files, ranges, lengths, {}, []
        self.url = f"http://127.0.0.1:{self.server_address[1]}/"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self) -> None:
        name, asked = self.path.lstrip("/"), self.headers.get("Range")
        self.server.requests.append((name, asked))
        data = self.server.files.get(name)
        if data is None:
            self.send_error(404)
            return
        start = int(asked.removeprefix("bytes=").split("-")[0]) if asked and self.server.ranges else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if self.server.lengths:  # else the body ends when the connection closes (HTTP/1.0)
            self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        cut = self.server.cut_at.get(name)
        self.wfile.write(data[start:cut])
        self.close_connection = cut is not None or not self.server.lengths  # EOF ends the body

    def log_message(self, *args) -> None:  # quiet: the test reads server.requests instead
        pass


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache, no Debian folder to fall back on, and loopback reached directly (no proxy)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_DIR", tmp_path / "no-debian-package")
    return tmp_path / "cache" / "shufflesearch" / "datasets"


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    out, err = capsys.readouterr()
    return done.value.code, out, err


def one_error(err: str) -> str:
    """The error line, checked to be the only one and the last thing written (progress lines come before it)."""
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.endswith(errors[0] + "\n") and "Traceback" not in err, err
    return errors[0]


def files_under(folder) -> list[str]:
    """Files below `folder`, but the download locks (empty files beside each dataset's folder)."""
    found = folder.rglob("*") if folder.exists() else ()
    return sorted(str(p.relative_to(folder)) for p in found if p.is_file() and p.suffix != ".lock")


@pytest.mark.slow
def test_download_is_verified_cached_and_loaded_by_the_real_loader(cache, capsys):
    real = upstream_files()
    with FileServer(real) as server:
        code, out, err = run_cli(["data", "get", "fashion-mnist", "--mirror", server.url], capsys)
        assert code == 0, err
        assert "4 file(s) verified by SHA-256, 4 downloaded" in out
        assert files_under(cache / "fashion-mnist") == sorted(FILES)
        for name in FILES:
            assert (cache / "fashion-mnist" / name).read_bytes() == real[name]
        # Again: every file is checked where it lies and nothing is fetched.
        asked = len(server.requests)
        code, out, _ = run_cli(["data", "get", "fashion-mnist", "--mirror", server.url, "--json"], capsys)
        assert code == 0 and len(server.requests) == asked and out.count('"how": "cached"') == 4
    ds = load_dataset("fashion-mnist")  # the Debian folder is absent (fixture): the cached copy is read
    assert ds.source == str(cache / "fashion-mnist")
    debian = load_dataset("fashion-mnist", DEBIAN)
    assert torch.equal(ds.train_images, debian.train_images) and torch.equal(ds.test_labels, debian.test_labels)


def test_a_wrong_checksum_is_refused_in_one_line_and_leaves_no_file(cache, capsys):
    tampered = dict(upstream_files())
    labels = bytearray(tampered["t10k-labels-idx1-ubyte.gz"])
    labels[-9] ^= 1  # one bit of the deflate stream, same length
    tampered["t10k-labels-idx1-ubyte.gz"] = bytes(labels)
    with FileServer(tampered) as server:
        code, _, err = run_cli(["data", "get", "fashion-mnist", "--mirror", server.url], capsys)
    assert code == 1 and "t10k-labels-idx1-ubyte.gz" in one_error(err) and "SHA-256" in one_error(err)
    assert "t10k-labels-idx1-ubyte.gz" not in files_under(cache)  # neither the file nor its part
    assert not any(name.endswith(".part") for name in files_under(cache))


def _not_cifar10(size: int | None = None) -> bytes:
    """A small tarball under CIFAR-10's name (padded with zeros to `size`): only ever a file to refuse."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        payload = b"not the CIFAR-10 batches"
        member = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    data = buffer.getvalue()
    return data + bytes(size - len(data)) if size else data


@pytest.mark.slow
def test_an_archive_with_cifar10s_size_but_not_its_checksum_is_refused(cache, capsys):
    size = DOWNLOADS["cifar10"].files[0].size
    with FileServer({"cifar-10-python.tar.gz": _not_cifar10(size)}) as server:
        code, _, err = run_cli(["data", "get", "cifar10", "--mirror", server.url], capsys)
    assert code == 1 and "cifar-10-python.tar.gz" in one_error(err) and "not the published 6d958be074577803" in err
    assert files_under(cache) == []
    with pytest.raises(DatasetError, match="not in the cache"):
        load_dataset("cifar10")


def test_a_file_of_another_size_is_refused_before_it_is_downloaded(cache, capsys):
    with FileServer({"cifar-10-python.tar.gz": _not_cifar10()}) as server:
        code, _, err = run_cli(["data", "get", "cifar10", "--mirror", server.url, "--json"], capsys)
    assert code == 1 and "the published cifar-10-python.tar.gz 170498071" in one_error(err)
    assert files_under(cache) == []


@pytest.mark.slow
@pytest.mark.parametrize("ranges", [True, False], ids=["resumed", "server-ignores-ranges"])
def test_an_interrupted_download_leaves_nothing_half_written_then_completes(cache, capsys, ranges):
    real = upstream_files()
    big = "train-images-idx3-ubyte.gz"
    with FileServer(real, ranges=ranges) as server:
        server.cut_at[big] = 10_000_000
        code, _, err = run_cli(["data", "get", "fashion-mnist", "--mirror", server.url], capsys)
        assert code == 1 and "run the same command again to resume" in one_error(err)
        assert big not in files_under(cache / "fashion-mnist")  # only its hidden part
        assert (cache / "fashion-mnist" / f".{big}.part").stat().st_size == 10_000_000
        with pytest.raises(DatasetError, match="not found"):
            load_dataset("fashion-mnist")
        del server.cut_at[big]
        code, _, err = run_cli(["data", "get", "fashion-mnist", "--mirror", server.url], capsys)
        assert code == 0, err
        assert (big, "bytes=10000000-") in server.requests
        assert ("resuming" in err) == ranges
    assert files_under(cache / "fashion-mnist") == sorted(FILES)
    assert load_dataset("fashion-mnist").train_images.shape == (60000, 1, 28, 28)


def test_a_server_sending_too_much_is_cut_off(cache):
    real = dict(upstream_files())
    real["t10k-labels-idx1-ubyte.gz"] += b"\0" * 4096  # more than the published size
    with (
        FileServer(real, lengths=False) as server,
        pytest.raises(download.DownloadError, match="more than the published 5148 bytes"),
    ):
        fetch_dataset("fashion-mnist", mirror=server.url)


def test_the_mirror_comes_from_the_environment_and_must_be_http(cache, capsys, monkeypatch):
    monkeypatch.setenv(download.MIRROR_ENV, "ftp://mirror.example/")
    code, _, err = run_cli(["data", "get", "fashion-mnist"], capsys)
    assert code == 2 and "must be an http:// or https:// URL" in err
    monkeypatch.setenv(download.MIRROR_ENV, "http://127.0.0.1:9/")  # the discard port: nothing listens
    code, _, err = run_cli(["data", "get", "fashion-mnist"], capsys)
    assert code == 1 and "127.0.0.1:9" in one_error(err)


def test_the_command_offers_exactly_the_downloadable_datasets():
    from shufflesearch.cli.data import Downloadable

    assert set(typing.get_args(Downloadable)) == set(DOWNLOADS)

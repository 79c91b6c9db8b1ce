"""Fetching a dataset into the cache from its published URLs, for machines without Debian's package.

Each file is checked against its published SHA-256 before it takes its name in the cache, so a
loader never sees a partial or altered file. A download cut short stays beside it as a hidden
`.NAME.part` that the next run resumes (an HTTP range request; a server that ignores ranges sends the
whole file again, which overwrites it). A lock per dataset keeps two runs from writing the same part.

>>> fetch_dataset("fashion-mnist").folder  # doctest: +SKIP
PosixPath('/home/ada/.cache/shufflesearch/datasets/fashion-mnist')
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...cache_dir import cache_root
from ...errors import MachineError, UsageError

__all__ = ["DOWNLOADS", "MIRROR_ENV", "DownloadError", "FetchResult", "cached_folder", "fetch_dataset"]

MIRROR_ENV = "SHUFFLESEARCH_DATA_MIRROR"
CIFAR10_FOLDER = "cifar-10-batches-py"
_CHUNK = 1 << 20
_TIMEOUT_S = 60  # per connect and per read: a stalled server ends the run (resumable), it does not hang it


class DownloadError(MachineError):
    """The network, the server or its bytes failed us; the request itself was fine (exit 1)."""


@dataclass(frozen=True)
class RemoteFile:
    name: str
    sha256: str
    size: int  # bytes, as published: a server sending more is refused before the disk fills


@dataclass(frozen=True)
class Source:
    """Where a dataset is published: base URLs tried in order, and its files' checksums."""

    urls: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    page: str  # the dataset's own page, for the reader who wants to check the checksums


# The SHA-256s are those of the published files (the Fashion-MNIST README publishes MD5s:
# 8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd...; the CIFAR-10 page c58f30108f718f92721af3b95e74349a);
# Debian's dataset-fashion-mnist holds the same deflate streams re-wrapped without the file name.
DOWNLOADS = {
    "fashion-mnist": Source(
        urls=(
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ),
        files=(
            RemoteFile("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
            RemoteFile("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
            RemoteFile("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
            RemoteFile("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
        ),
        page="https://github.com/zalandoresearch/fashion-mnist#get-the-data",
    ),
    "cifar10": Source(
        urls=("https://www.cs.toronto.edu/~kriz/",),
        files=(
            RemoteFile("cifar-10-python.tar.gz", "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce", 170498071),
        ),
        page="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
}  # fmt: skip


@dataclass
class FetchResult:
    """What `fetch_dataset` did: the folder a loader reads, and per file how it got there."""

    dataset: str
    folder: Path
    files: list[dict] = field(default_factory=list)  # name, sha256, bytes, how ("downloaded", "resumed", "cached")


def cached_folder(dataset: str, environ: dict | None = None) -> Path:
    """The folder `fetch_dataset` fills and the loaders read when no folder is named (not created)."""
    folder = cache_root(environ) / "datasets" / dataset
    return folder / CIFAR10_FOLDER if dataset == "cifar10" else folder


def fetch_dataset(
    dataset: str, mirror: str | None = None, progress: Callable[[str], None] | None = None
) -> FetchResult:
    """Download `dataset`'s published files into the cache, each verified by SHA-256; files already there are checked.

    `mirror` (else $SHUFFLESEARCH_DATA_MIRROR) is a base URL holding the same file names, tried instead of
    the published ones.
    """
    if dataset not in DOWNLOADS:
        raise UsageError(f"no download for dataset {dataset!r}: choose one of {', '.join(DOWNLOADS)}")
    source = DOWNLOADS[dataset]
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    urls = (_checked_base(mirror),) if mirror else source.urls
    say = progress or (lambda message: None)
    from filelock import FileLock

    folder = cache_root() / "datasets" / dataset
    result = FetchResult(dataset, cached_folder(dataset))
    folder.mkdir(parents=True, exist_ok=True)
    # Beside the folder, not in it: the folder holds verified files and resumable parts only.
    with FileLock(folder.parent / f".{dataset}.lock"):
        try:
            for remote in source.files:
                how = _fetch_file(remote, urls, folder, say)
                result.files.append({"name": remote.name, "sha256": remote.sha256, "bytes": remote.size, "how": how})
            if dataset == "cifar10" and not result.folder.is_dir():  # it appears whole (see _extract_cifar)
                say(f"extracting {remote.name}")
                _extract_cifar(folder / remote.name, folder)
        finally:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if nothing was kept: a refused first download leaves no trace
    return result


def _checked_base(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"mirror {url!r} must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/")
    return url if url.endswith("/") else url + "/"


def _fetch_file(remote: RemoteFile, urls: tuple[str, ...], folder: Path, say: Callable[[str], None]) -> str:
    target, part = folder / remote.name, folder / f".{remote.name}.part"
    if target.is_file():
        if _sha256(target) == remote.sha256:
            return "cached"
        say(f"{target} does not match its SHA-256: downloading it again")
    failures = []
    for base in urls:
        try:
            resumed = _download(base + remote.name, part, remote, say)
            break
        except DownloadError as exc:
            failures.append(str(exc))
    else:
        raise DownloadError(failures[-1] if len(failures) == 1 else "; ".join(failures))
    digest = _sha256(part)
    if digest != remote.sha256:
        part.unlink()
        raise DownloadError(
            f"{remote.name} from {base} has SHA-256 {digest[:16]}..., not the published {remote.sha256[:16]}...: "
            "the server sent other bytes; nothing was kept (try again later or another --mirror)"
        )
    os.replace(part, target)
    return "resumed" if resumed else "downloaded"


def _download(url: str, part: Path, remote: RemoteFile, say: Callable[[str], None]) -> bool:
    """Fill `part` with `url`'s bytes, resuming what is there (True if it did); a failure leaves `part` to resume."""
    import http.client
    import urllib.error
    import urllib.request

    have = part.stat().st_size if part.is_file() else 0
    if have >= remote.size:  # a finished part that failed its check was deleted: this one is stale
        part.unlink()
        have = 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            resumed = bool(have) and response.status == 206 and _range_start(response) == have
            if not resumed:
                have = 0  # the server sends the whole file: it overwrites the part
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and have + int(length) != remote.size:
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"{url} is {have + int(length)} bytes, the published {remote.name} {remote.size}: "
                    "not the published file; nothing was kept (try again later or another --mirror)"
                )
            say(f"{'resuming' if have else 'downloading'} {remote.name} ({remote.size / 1e6:.1f} MB) from {url}")
            with open(part, "ab" if have else "wb") as out:
                while chunk := response.read(_CHUNK):
                    have += len(chunk)
                    if have > remote.size:
                        out.truncate(0)
                        raise DownloadError(f"{url} sends more than the published {remote.size} bytes of {remote.name}")
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # our range is past the server's file: start over next time
            part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(
            f"download of {remote.name} from {url} stopped at {have} of {remote.size} bytes ({reason}): "
            "run the same command again to resume"
        ) from None
    if have != remote.size:
        raise DownloadError(
            f"{url} ended after {have} of {remote.size} bytes of {remote.name}: run the same command again to resume"
        )
    return resumed


def _range_start(response) -> int | None:
    # "Content-Range: bytes 100-199/200": the first byte the server sends.
    text = response.headers.get("Content-Range", "")
    start = text.removeprefix("bytes ").split("-", 1)[0]
    return int(start) if text.startswith("bytes ") and start.isdigit() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _extract_cifar(archive: Path, folder: Path) -> None:
    """Unpack the verified archive's batches beside it; they appear under their name all at once, or not at all."""
    import tarfile

    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".extract-"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(f"{CIFAR10_FOLDER}/") and m.isfile()]
            if any(".." in Path(m.name).parts for m in members):
                raise tarfile.TarError("a member's path leaves the archive's folder")
            # Regular files inside the folder only; "data" also drops owners and odd permission bits (3.11.4+).
            tar.extractall(staging, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        shutil.rmtree(folder / CIFAR10_FOLDER, ignore_errors=True)  # a damaged earlier copy
        os.replace(staging / CIFAR10_FOLDER, folder / CIFAR10_FOLDER)
    except (tarfile.TarError, EOFError) as exc:
        raise DownloadError(
            f"{archive} passed its SHA-256 but cannot be unpacked ({exc}): delete it and retry"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)

"""Fetch a source into the cache: http(s) with retries and resume, file:// and paths by copy.

Bytes are hashed while they are written to a temp file inside the cache, and checked against
the pin before the file becomes visible there: a file in the cache always holds what its name says.
"""

from __future__ import annotations

import os
import posixpath
import re
import sys
import time
import urllib.parse
from pathlib import Path

import requests
import urllib3

from bundler.cache import CHUNK, Cache, check_sha256
from payload.errors import NetworkError, UsageError

TIMEOUT = (15, 60)  # connect, between bytes (seconds)
RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}
OFFLINE_ENV = "BUNDLER_OFFLINE"


def is_offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def fetch(
    url: str,
    sha256: str | None = None,
    cache: Cache | None = None,
    progress: bool | None = None,
    retries: int = 4,
    offline: bool = False,
    *,
    base_dir: str | os.PathLike | None = None,
    reuse_unpinned: bool = False,
    backoff: float = 0.5,
    timeout: tuple[float, float] = TIMEOUT,
) -> Path:
    """Return the path of url's bytes in the cache, downloading or copying them when needed.

    sha256:          the pin; a cached pin never touches the network, a wrong one raises IntegrityError.
                     A local file is read every time and checked against the pin.
    progress:        None = a bar on stderr when it is a terminal; True/False force it.
    offline:         (or BUNDLER_OFFLINE=1) use only the cache and local files.
    base_dir:        where relative paths start (the manifest's directory); default the working directory.
    reuse_unpinned:  without a pin, reuse the blob an earlier fetch of the same URL recorded.
    """
    cache = cache if cache is not None else Cache()
    offline = offline or is_offline()
    if sha256 is not None:
        sha256 = check_sha256(sha256)

    # A local file is always read: it may have changed since it was pinned, whatever the cache holds.
    local = _local_path(url, base_dir)
    if local is not None:
        return _copy_local(url, local, sha256, cache)
    if sha256 is not None and cache.has(sha256):
        return cache.blob_path(sha256)

    if sha256 is None and (reuse_unpinned or offline):
        recorded = cache.url_sha256(url)
        if recorded and cache.has(recorded):
            return cache.blob_path(recorded)
    if offline:
        raise NetworkError(f"{url} is not in the cache; run `bundler fetch` on a machine with network")

    show = sys.stderr.isatty() if progress is None else progress
    digest = _download(url, sha256, cache, retries, backoff, timeout, show)
    cache.record_url(url, digest)
    return cache.blob_path(digest)


def is_local(url: str) -> bool:
    """True for a file:// URL or a plain path: a source that is read from this machine at every build."""
    return _local_path(url, None) is not None


def local_path(url: str) -> Path:
    """The file a local source (file:// URL or absolute path) names."""
    path = _local_path(url, None)
    if path is None:
        raise ValueError(f"{url} is not a local source")
    return path


def _local_path(url: str, base_dir) -> Path | None:
    """The file a file:// URL or plain path names; None for http(s)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise UsageError(f"{url}: not a valid URL ({exc}); fix the source in bundle.toml") from None
    scheme = parts.scheme.lower()
    if scheme in {"http", "https"}:
        return None
    if scheme == "file":
        if parts.netloc not in {"", "localhost"}:
            raise UsageError(f"{url}: file:// URLs must name a local path (file:///path); fix the source URL")
        return Path(urllib.parse.unquote(parts.path))
    if "://" in url:
        raise UsageError(f"{url}: unsupported URL scheme {parts.scheme!r}; use https://, http://, file:// or a path")
    path = Path(url).expanduser()
    return path if path.is_absolute() else Path(base_dir or Path.cwd()) / path


def _copy_local(url: str, path: Path, sha256: str | None, cache: Cache) -> Path:
    if not path.is_file():
        state = "is not a regular file" if path.exists() else "does not exist"
        raise UsageError(f"source {url} ({path}) {state}; fix the path in bundle.toml")
    return cache.blob_path(cache.put_file(path, sha256, what=f"copy of {url}"))


class _Retryable(Exception):
    """A failure that another attempt may cure (connection trouble, 5xx)."""


def _download(url, sha256, cache, retries, backoff, timeout, show_progress) -> str:
    session = requests.Session()
    session.headers["User-Agent"] = "bundler"
    bar = _ProgressBar(_display_name(url)) if show_progress else None
    try:
        with cache.writer(f"download of {url}") as blob:
            attempt = 0
            while True:
                try:
                    _attempt(session, url, blob, timeout, bar)
                    break
                except _Retryable as exc:
                    if attempt >= retries:
                        tries = "1 attempt" if attempt == 0 else f"{attempt + 1} attempts"
                        raise NetworkError(
                            f"download of {url} failed after {tries}: {exc}; check the URL and the network"
                        ) from None
                    time.sleep(backoff * 2**attempt)
                    attempt += 1
            return blob.commit(sha256)
    finally:
        session.close()
        if bar:
            bar.close()


def _attempt(session, url, blob, timeout, bar) -> None:
    """One GET into blob, resuming with Range when bytes from an earlier attempt are kept."""
    headers = {"Accept-Encoding": "identity"}  # store the bytes as published, never a decoded copy
    if blob.size:
        headers["Range"] = f"bytes={blob.size}-"
    try:
        response = session.get(url, headers=headers, stream=True, timeout=timeout)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Retryable(_reason(exc)) from None
    except requests.RequestException as exc:
        raise NetworkError(f"download of {url} failed: {_reason(exc)}; check the URL") from None

    with response:
        status = response.status_code
        resumed = (
            status == 206
            and blob.size > 0
            and response.headers.get("Content-Range", "").startswith(f"bytes {blob.size}-")
        )
        if status == 416 and blob.size:
            blob.reset()
            raise _Retryable("the server refused to resume")
        if status in RETRY_STATUSES or status >= 500:
            raise _Retryable(f"HTTP {status} {response.reason}")
        if status != 200 and not resumed:
            raise NetworkError(f"download of {url} failed: HTTP {status} {response.reason}; check the URL")
        if not resumed:
            blob.reset()

        length = response.headers.get("Content-Length")
        expected = blob.size + int(length) if length and length.isdigit() else None
        if bar:
            bar.start(blob.size, expected)
        try:
            for chunk in response.raw.stream(CHUNK, decode_content=False):
                blob.write(chunk)
                if bar:
                    bar.update(blob.size)
        except (requests.RequestException, urllib3.exceptions.HTTPError, ConnectionError) as exc:
            what = "timed out" if isinstance(exc, urllib3.exceptions.TimeoutError) else "connection broken"
            of = f" of {expected}" if expected is not None else ""
            raise _Retryable(f"{what} after {blob.size}{of} bytes") from None
        if expected is not None and blob.size != expected:
            raise _Retryable(f"connection closed after {blob.size} of {expected} bytes")


def _reason(exc: BaseException) -> str:
    """One short line out of the nested exceptions requests and urllib3 raise."""
    inner = exc.args[0] if exc.args else None
    if isinstance(inner, urllib3.exceptions.MaxRetryError) and inner.reason is not None:
        exc = inner.reason
    if isinstance(exc, urllib3.exceptions.NameResolutionError):
        host = re.search(r"Failed to resolve '([^']+)'", str(exc))
        return f"cannot resolve host {host.group(1)}" if host else "cannot resolve host"
    text = str(exc)
    errno_text = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno_text:
        return errno_text[-1].strip().lower()
    # after the errno check: urllib3's NewConnectionError is a subclass of its timeout error
    if isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError)):
        return "timed out"
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _display_name(url: str) -> str:
    name = posixpath.basename(urllib.parse.urlsplit(url).path.rstrip("/")) or url
    return name if len(name) <= 30 else name[:27] + "..."


class _ProgressBar:
    """`name  [#####.....]  45%  12.3/27.0 MB` on one stderr line, redrawn at most 10 times a second."""

    WIDTH = 30

    def __init__(self, name: str, stream=None):
        self.name = name
        self.stream = stream or sys.stderr
        self.total = None
        self.done = 0
        self._drawn_at = 0.0

    def start(self, done: int, total: int | None) -> None:
        self.total = total
        self.update(done, force=True)

    def update(self, done: int, force: bool = False) -> None:
        self.done = done
        now = time.monotonic()
        if force or now - self._drawn_at >= 0.1:
            self._drawn_at = now
            self._draw()

    def close(self) -> None:
        self._draw()
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self) -> None:
        mb = self.done / 1e6
        if self.total:
            filled = min(self.WIDTH, self.WIDTH * self.done // self.total)
            percent = min(100, 100 * self.done // self.total)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            line = f"{self.name}  [{bar}] {percent:3d}%  {mb:.1f}/{self.total / 1e6:.1f} MB"
        else:
            line = f"{self.name}  {mb:.1f} MB"
        self.stream.write("\r" + line)
        self.stream.flush()

"""Fetch a source into the cache: http(s) through payload/http (retries, resume), file:// and paths by copy.

Bytes are hashed while they are written to a temp file inside the cache, and checked against
the pin before the file becomes visible there: a file in the cache always holds what its name says.
"""

from __future__ import annotations

import os
import posixpath
import urllib.parse
from pathlib import Path

import requests

from bundler.cache import Cache, check_sha256
from payload import http
from payload import progress as progress_display
from payload.errors import NetworkError, UsageError

TIMEOUT = http.TIMEOUT
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
    backoff: float = 0.5,
    timeout: tuple[float, float] = TIMEOUT,
) -> Path:
    """Return the path of url's bytes in the cache, downloading or copying them when needed.

    sha256:          the pin; a cached pin never touches the network, a wrong one raises IntegrityError.
                     A local file is read every time and checked against the pin.
    progress:        None = a bar on stderr when it is a terminal; True/False force it.
    offline:         (or BUNDLER_OFFLINE=1) use only the cache and local files.
    A plain relative path starts at the working directory (the manifest makes its paths absolute first).
    """
    cache = cache if cache is not None else Cache()
    offline = offline or is_offline()
    if sha256 is not None:
        sha256 = check_sha256(sha256)

    # A local file is always read: it may have changed since it was pinned, whatever the cache holds.
    local = _local_path(url)
    if local is not None:
        return _copy_local(url, local, sha256, cache)
    if sha256 is not None and cache.has(sha256):
        return cache.blob_path(sha256)

    if sha256 is None and offline:
        recorded = cache.url_sha256(url)
        if recorded and cache.has(recorded):
            return cache.blob_path(recorded)
    if offline:
        raise NetworkError(f"{url} is not in the cache; run `bundler fetch` on a machine with network")

    digest = _download(url, sha256, cache, retries, backoff, timeout, progress)
    cache.record_url(url, digest)
    return cache.blob_path(digest)


def is_local(url: str) -> bool:
    """True for a file:// URL or a plain path: a source that is read from this machine at every build."""
    return _local_path(url) is not None


def local_path(url: str) -> Path:
    """The file a local source (file:// URL or absolute path) names."""
    path = _local_path(url)
    if path is None:
        raise ValueError(f"{url} is not a local source")
    return path


def _local_path(url: str) -> Path | None:
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
    return path if path.is_absolute() else Path.cwd() / path


def _copy_local(url: str, path: Path, sha256: str | None, cache: Cache) -> Path:
    if not path.is_file():
        state = "is not a regular file" if path.exists() else "does not exist"
        raise UsageError(f"source {url} ({path}) {state}; fix the path in bundle.toml")
    return cache.blob_path(cache.put_file(path, sha256, what=f"copy of {url}"))


def _download(url, sha256, cache, retries, backoff, timeout, show_progress) -> str:
    session = http.session("bundler")
    display = progress_display.callback(show_progress)
    policy = http.RetryPolicy(retries, backoff)

    def give_up(reason, attempts):
        return NetworkError(
            f"download of {url} failed after {http.attempts_text(attempts)}: {reason}; check the URL and the network"
        )

    try:
        with cache.writer(f"download of {url}") as blob:
            policy.run(lambda: _attempt(session, url, blob, timeout, display), give_up)
            return blob.commit(sha256)
    finally:
        session.close()
        progress_display.finish(display)


def _attempt(session, url, blob, timeout, display) -> None:
    """One GET into blob, resuming with Range when bytes from an earlier attempt are kept."""
    headers = {"Accept-Encoding": "identity"}  # store the bytes as published, never a decoded copy
    headers.update(http.resume_headers(blob))
    try:
        response = session.get(url, headers=headers, stream=True, timeout=timeout)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise http.Retry(http.short_reason(exc, timeout)) from None
    except requests.RequestException as exc:
        raise NetworkError(f"download of {url} failed: {http.short_reason(exc)}; check the URL") from None

    with response:
        status = response.status_code
        if status == 416 and blob.size:
            blob.reset()
            raise http.Retry("the server refused to resume")
        failure = http.status_failure(response)
        if failure is not None:
            raise failure
        if status not in (200, 206):
            raise NetworkError(f"download of {url} failed: HTTP {status} {response.reason}; check the URL")
        http.body_start(response, blob)
        http.stream_body(response, blob, display, _display_name(url))


def _display_name(url: str) -> str:
    name = posixpath.basename(urllib.parse.urlsplit(url).path.rstrip("/")) or url
    return name if len(name) <= 30 else name[:27] + "..."

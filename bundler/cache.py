"""A content-addressed store for downloads and other build artefacts.

Layout under the root:

    blobs/sha256/<hex>   immutable files, named by the sha256 of their bytes
    tmp/                 files being written; renamed into blobs/ only when complete
    maps/<ns>/<hash>     small key -> sha256 records (which URL gave which blob, ...)
    <kind>/              free-form caches other modules ask for with dir(kind)

Every visible name appears by an atomic rename from tmp/ (same file system), and
temp names are unique, so two builds may share one cache at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
from pathlib import Path

from payload import fs
from payload.errors import HostError, IntegrityError, UsageError, write_error
from payload.fs import CHUNK

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_KIND_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_RESERVED_KINDS = {"blobs", "tmp", "maps"}


def default_root() -> Path:
    """$BUNDLER_CACHE_DIR, else $XDG_CACHE_HOME/bundler, else ~/.cache/bundler."""
    if os.environ.get("BUNDLER_CACHE_DIR"):
        return Path(os.environ["BUNDLER_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "bundler"
    return Path.home() / ".cache" / "bundler"


def check_sha256(sha256: str) -> str:
    """Return the digest in lower case; a UsageError if it is not 64 hex digits."""
    normal = str(sha256).strip().lower()
    if not _SHA256_HEX.fullmatch(normal):
        raise UsageError(f"sha256 {sha256!r} is not 64 hex digits; check the pin in bundle.toml / bundle.lock")
    return normal


def _host_error(exc: OSError, what: str, root: Path) -> HostError:
    """An OSError while writing into the cache, as a one-line HostError the user can act on."""
    return write_error(
        exc,
        f"no space left in the cache {root} while writing {what}; free space or set BUNDLER_CACHE_DIR / --cache-dir",
        lambda reason: f"cannot write {what} into the cache {root}: {reason}; check its permissions",
    )


def file_sha256(path: str | os.PathLike) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as src:
        while chunk := src.read(CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


class BlobWriter:
    """A temp file in the cache that hashes what is written and becomes a blob on commit()."""

    def __init__(self, cache: Cache, what: str):
        self._cache = cache
        self._what = what
        self.path = Path(fs.temp_name(cache.tmp / "blob"))
        self._file = open(self.path, "wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self.committed: str | None = None

    def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise _host_error(exc, self._what, self._cache.root) from None
        self._hash.update(data)
        self.size += len(data)

    def reset(self) -> None:
        """Forget everything written so far (a download that has to start again)."""
        self._file.seek(0)
        self._file.truncate()
        self._hash = hashlib.sha256()
        self.size = 0

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def commit(self, expected_sha256: str | None = None) -> str:
        """Make the bytes visible as blobs/sha256/<hex>; returns the hex digest.

        With expected_sha256 a mismatch raises IntegrityError and nothing becomes visible.
        """
        actual = self.hexdigest()
        if expected_sha256 is not None and actual != check_sha256(expected_sha256):
            raise IntegrityError(
                f"{self._what}: sha256 is {actual}, expected {check_sha256(expected_sha256)};"
                " check the pin in bundle.toml / bundle.lock"
            )
        try:
            self._file.close()
            os.chmod(self.path, 0o444)
            target = self._cache.blob_path(actual)
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.commit(self.path, target)
        except OSError as exc:
            raise _host_error(exc, self._what, self._cache.root) from None
        self._cache._checked.add(actual)
        self.committed = actual
        return actual

    def _discard(self) -> None:
        with contextlib.suppress(OSError):  # closing flushes, and the disk may still be full
            self._file.close()
        fs.safe_unlink(self.path)


class Cache:
    def __init__(self, root: str | os.PathLike | None = None, notice=None):
        self.root = Path(root) if root is not None else default_root()
        self.root = self.root.expanduser().absolute()
        self.notice = notice or (lambda message: print(message, file=sys.stderr))
        self._checked: set[str] = set()  # blobs whose bytes this process has hashed against their name
        try:
            for sub in ("blobs/sha256", "tmp", "maps"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            self.clear_tmp()
        except OSError as exc:
            raise HostError(
                f"cannot create the cache directory {self.root}: {exc.strerror}; set BUNDLER_CACHE_DIR / --cache-dir"
            ) from None

    @property
    def tmp(self) -> Path:
        """Where every cache entry is written before its rename (same file system as the entries)."""
        return self.root / "tmp"

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r})"

    # blobs

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / "sha256" / check_sha256(sha256)

    def has(self, sha256: str) -> bool:
        """Whether the store holds the blob, its bytes checked against its name (once per Cache object). A blob
        that does not hold what its name says (a flipped bit, a write lost to a power cut) is dropped with a
        notice, so that the caller fetches or makes it again."""
        path = self.blob_path(sha256)
        if not path.is_file():
            return False
        if path.name in self._checked:
            return True
        if file_sha256(path) == path.name:
            self._checked.add(path.name)
            return True
        self.drop(path, "its bytes do not match its sha256 name")
        return False

    def drop(self, path: Path, why: str) -> None:
        """Remove a damaged cache entry, saying so in one line."""
        self.notice(f"bundler: cache entry {path} is damaged ({why}); removed, making it again")
        try:
            fs.safe_unlink(path)
        except OSError as exc:
            raise _host_error(exc, f"the removal of {path}", self.root) from None

    @contextlib.contextmanager
    def writer(self, what: str = "a cache entry"):
        """Yield a BlobWriter; call .commit() inside the block. Anything not committed is removed.

        `what` names the content in error messages ("download of URL").
        """
        try:
            blob = BlobWriter(self, what)
        except OSError as exc:
            raise _host_error(exc, what, self.root) from None
        try:
            yield blob
        finally:
            if blob.committed is None:
                blob._discard()

    def adopt(self, path: str | os.PathLike, sha256: str, what: str) -> Path:
        """Move a finished file (written under this cache's root by another tool) into the store as the blob
        `sha256`, after hashing it again: a blob in the store always holds what its name says."""
        path = Path(path)
        expected = check_sha256(sha256)
        actual = file_sha256(path)
        if actual != expected:
            fs.safe_unlink(path)
            raise IntegrityError(f"{what}: sha256 is {actual}, expected {expected}")
        target = self.blob_path(expected)
        try:
            os.chmod(path, 0o444)
            fs.commit(path, target)
        except OSError as exc:
            raise _host_error(exc, what, self.root) from None
        self._checked.add(expected)
        return target

    def put_file(self, src: str | os.PathLike, sha256: str | None = None, what: str | None = None) -> str:
        """Copy a file into the store (verifying it when sha256 is given); returns its sha256.

        The source is always read, even when the store holds the pinned blob: a file edited since it was pinned
        must be refused, not replaced by the old bytes."""
        src = Path(src)
        what = what or f"copy of {src}"
        try:
            source = open(src, "rb")
        except OSError as exc:
            raise UsageError(f"cannot read {src}: {exc.strerror}; check the path and its permissions") from None
        with source, self.writer(what) as blob:
            while chunk := source.read(CHUNK):
                blob.write(chunk)
            return blob.commit(sha256)

    # key -> sha256 records

    def lookup(self, namespace: str, key: str) -> str | None:
        """The sha256 recorded for key, or None."""
        try:
            value = self._record_path(namespace, key).read_text().strip()
        except FileNotFoundError:
            return None
        return value if _SHA256_HEX.fullmatch(value) else None

    def record(self, namespace: str, key: str, sha256: str) -> None:
        path = self._record_path(namespace, key)
        value = check_sha256(sha256) + "\n"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fs.write_atomic(path, value, temp_dir=self.tmp)
        except OSError as exc:
            raise _host_error(exc, f"the record for {key}", self.root) from None

    def url_sha256(self, url: str) -> str | None:
        """The sha256 of the last complete download of url (recorded by fetch), or None."""
        return self.lookup("urls", url)

    def record_url(self, url: str, sha256: str) -> None:
        self.record("urls", url, sha256)

    def _record_path(self, namespace: str, key: str) -> Path:
        _check_kind(namespace)
        return self.root / "maps" / namespace / hashlib.sha256(key.encode()).hexdigest()

    # other caches

    def dir(self, kind: str) -> Path:
        """A directory for another cache (stubs, compressed groups); created on first use."""
        _check_kind(kind)
        if kind in _RESERVED_KINDS:
            raise ValueError(f"cache kind {kind!r} is reserved")
        path = self.root / kind
        path.mkdir(parents=True, exist_ok=True)
        return path

    def clear_tmp(self) -> list[str]:
        """Remove the temp files of builds that died (killed, power cut) and return their names. Temp names carry
        their writer's PID, so those of a build running beside this one, sharing the cache, are kept."""
        return fs.remove_dead_temps(self.tmp)


def _check_kind(kind: str) -> None:
    if not _KIND_NAME.fullmatch(kind):
        raise ValueError(f"cache kind {kind!r} must be a simple lower-case name")

"""Take one file out of a release archive (.tar, .tar.gz/.tgz, .tar.xz, .tar.bz2, .tar.zst, .zip).

The format is read from the first bytes, not the name: archives sit in the cache under their sha256.
Member names match exactly, except for a leading "./"; a top-level directory is never skipped
("crun" does not find "crun-1.26/crun"; the error then names it). Links are followed inside the
archive only.
"""

from __future__ import annotations

import bz2
import contextlib
import difflib
import gzip
import lzma
import posixpath
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

import zstandard

from bundler.cache import Cache, check_sha256
from payload import fs
from payload.errors import HostError, IntegrityError, UsageError, write_error
from payload.fs import CHUNK

MAX_LINK_HOPS = 16
# Build side only: accept archives made with `zstd --long=31`; the device never reads these.
ZSTD_MAX_WINDOW = 1 << 31

_MAGIC = [
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
]
# What reading a damaged archive raises.
CORRUPT = (tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, zstandard.ZstdError, zipfile.BadZipFile, OSError)


def extract_member(archive_path, member: str, dest_path, *, archive_name: str | None = None) -> Path:
    """Write `member` of the archive to dest_path (atomically: a temp file beside it, then rename)."""
    dest = Path(dest_path)
    label = archive_name or str(archive_path)
    try:
        with fs.atomic_file(dest) as out:
            _extract_to(Path(archive_path), _norm(member), _FileSink(out, dest, label), label)
    except OSError as exc:
        raise _write_error(exc, dest, label) from None
    return dest


def extract_cached(cache: Cache, archive_sha256: str, member: str, *, archive_name: str | None = None) -> Path:
    """The cached blob holding `member` of the cached archive; extracted once per (archive, member).

    The result is a read-only blob path whose name is the sha256 of the member's bytes.
    """
    archive_sha256 = check_sha256(archive_sha256)
    wanted = _norm(member)
    label = archive_name or f"archive sha256:{archive_sha256}"
    key = f"{archive_sha256}:{wanted}"
    done = cache.lookup("extracted", key)
    if done and cache.has(done):
        return cache.blob_path(done)
    if not cache.has(archive_sha256):
        raise UsageError(f"{label} is not in the cache; fetch it before extracting {wanted!r}")
    with cache.writer(f"{wanted!r} from {label}") as blob:
        _extract_to(cache.blob_path(archive_sha256), wanted, blob, label)
        digest = blob.commit()
    cache.record("extracted", key, digest)
    return cache.blob_path(digest)


def _write_error(exc: OSError, dest: Path, label: str) -> HostError:
    return write_error(
        exc,
        f"no space left writing {dest} (from {label}); free space and try again",
        lambda reason: f"cannot write {dest} (from {label}): {reason}",
    )


class _FileSink:
    """A plain file with the write/reset interface of the cache's BlobWriter."""

    def __init__(self, file, dest: Path, label: str):
        self.file = file
        self.dest = dest
        self.label = label

    def write(self, data: bytes) -> None:
        try:
            self.file.write(data)
        except OSError as exc:  # here, not as a damaged archive below
            raise _write_error(exc, self.dest, self.label) from None

    def reset(self) -> None:
        self.file.seek(0)
        self.file.truncate()


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/") if name not in ("", "/") else name


def _extract_to(archive: Path, wanted: str, sink, label: str) -> None:
    kind = _archive_kind(archive, label)
    try:
        if kind == "zip":
            _zip_extract(archive, wanted, sink, label)
        else:
            _tar_extract(archive, kind, wanted, sink, label)
    except CORRUPT as exc:  # sinks raise HostError, so an OSError here comes from reading the archive
        raise IntegrityError(f"{label} is a damaged {kind} archive ({exc}); check the source and its sha256") from None


def _archive_kind(archive: Path, label: str) -> str:
    try:
        with open(archive, "rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise UsageError(f"cannot read archive {label}: {exc.strerror}") from None
    kind = stream_kind(head)
    if kind is not None:
        return kind
    if zipfile.is_zipfile(archive):
        return "zip"
    raise UsageError(
        f"{label} is not a .tar, .tar.gz, .tgz, .tar.xz, .tar.bz2, .tar.zst or .zip archive; check `extract`"
    )


def stream_kind(head: bytes) -> str | None:
    """What a stream starting with `head` (its first 512 bytes) holds: "gzip", "xz", "zstd", "bzip2", "tar" for a
    plain tar, or None."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if len(head) == 512 and head[257:262] == b"ustar":
        return "tar"
    return None


def decompressed(kind: str, raw):
    """A reader of the bytes of `raw` (a file object), decompressed as `kind` (one of stream_kind's answers)."""
    return _READERS[kind](raw)


# tar


_READERS = {
    "gzip": lambda raw: gzip.GzipFile(fileobj=raw),
    "xz": lzma.LZMAFile,
    "bzip2": bz2.BZ2File,
    # pzstd and `cat a.zst b.zst` write several frames: read them all
    "zstd": lambda raw: zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(
        raw, read_across_frames=True, closefd=False
    ),
    "tar": lambda raw: raw,
}


@contextlib.contextmanager
def _decompressed(archive: Path, kind: str):
    with open(archive, "rb") as raw, decompressed(kind, raw) as stream:
        yield stream


def _tar_extract(archive: Path, kind: str, wanted: str, sink, label: str) -> None:
    """One streaming pass copies the member if it is a file; a link costs a second pass for its target."""
    entries = _tar_pass(archive, kind, wanted, sink)
    target = _resolve(entries, wanted, label)
    if target != wanted:
        sink.reset()
        _tar_pass(archive, kind, target, sink)


def _tar_pass(archive: Path, kind: str, wanted: str, sink) -> dict[str, tuple[str, str]]:
    entries: dict[str, tuple[str, str]] = {}
    with _decompressed(archive, kind) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for info in tar:
            name = _norm(info.name)
            entries[name] = _tar_entry(info)
            if name == wanted and info.isreg():  # a later entry of the same name wins, as with tar -x
                sink.reset()
                source = tar.extractfile(info)
                while chunk := source.read(CHUNK):
                    sink.write(chunk)
    return entries


def _tar_entry(info: tarfile.TarInfo) -> tuple[str, str]:
    if info.isreg():
        return ("file", "")
    if info.isdir():
        return ("dir", "")
    if info.issym():
        return ("symlink", info.linkname)
    if info.islnk():
        return ("hardlink", _norm(info.linkname))
    return ("special", "")


# zip


def _zip_extract(archive: Path, wanted: str, sink, label: str) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos: dict[str, zipfile.ZipInfo] = {}
        entries: dict[str, tuple[str, str]] = {}
        for info in zf.infolist():
            name = _norm(info.filename)
            infos[name] = info
            mode = info.external_attr >> 16
            if info.is_dir():
                entries[name] = ("dir", "")
            elif stat.S_ISLNK(mode):
                entries[name] = ("symlink", zf.read(info).decode("utf-8", "replace"))
            else:
                entries[name] = ("file", "")
        target = _resolve(entries, wanted, label)
        sink.reset()
        with zf.open(infos[target]) as source:
            while chunk := source.read(CHUNK):
                sink.write(chunk)


# names and links


def _resolve(entries: dict[str, tuple[str, str]], wanted: str, label: str) -> str:
    """The name of the regular file `wanted` stands for, following links inside the archive."""
    if wanted not in entries:
        raise UsageError(_missing_message(entries, wanted, label))
    name = wanted
    for _ in range(MAX_LINK_HOPS):
        kind, link = entries[name]
        if kind == "file":
            return name
        if kind == "dir":
            raise UsageError(f"{label}: {name!r} is a directory; name a file inside it in `extract`")
        if kind == "special":
            raise UsageError(f"{label}: {name!r} is not a regular file (device, fifo...); name a file in `extract`")
        if kind == "symlink":
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), link))
        else:
            target = posixpath.normpath(link)
        if link.startswith("/") or target == ".." or target.startswith("../"):
            raise UsageError(
                f"{label}: {name!r} links to {link!r}, outside the archive; name the file itself in `extract`"
            )
        if target not in entries:
            raise UsageError(f"{label}: {name!r} links to {target!r}, which is not in the archive")
        name = target
    raise UsageError(f"{label}: {wanted!r} is a chain of more than {MAX_LINK_HOPS} links (a loop?)")


def _missing_message(entries: dict[str, tuple[str, str]], wanted: str, label: str) -> str:
    files = [name for name, (kind, _) in entries.items() if kind != "dir"]
    base = posixpath.basename(wanted)
    same_name = [name for name in files if posixpath.basename(name) == base]
    close = difflib.get_close_matches(wanted, files, n=5, cutoff=0.5)
    suggestions = list(dict.fromkeys(same_name + close))[:5]
    if suggestions:
        hint = "close names: " + ", ".join(suggestions)
    elif files:
        hint = f"it holds {len(files)} files, such as " + ", ".join(files[:5])
    else:
        hint = "it holds no files"
    return f"{label} has no member {wanted!r}; {hint}; fix `extract` in bundle.toml"

"""Compressed groups, cached by (the sha256 of their inputs, parameters): a rebuild that changes nothing in a
group recompresses none of it."""

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import zstandard

from payload import fs
from payload import progress as progress_display
from payload.blobs import JOB_SIZE, WINDOW_LOG, compress_group

from .cache import file_sha256


@dataclass(frozen=True)
class Member:
    path: str      # where it lands under the install root
    mode: int
    kind: str      # "file" or "blob"
    source: Path   # the bytes, in the cache
    sha256: str
    size: int


@dataclass(frozen=True)
class CompressedGroup:
    name: str
    members: tuple
    frame: Path
    size: int
    csize: int
    sha256: str


def group_key(members, level):
    material = {"inputs": [[m.sha256, m.size] for m in members], "level": level, "window_log": WINDOW_LOG, "job_size": JOB_SIZE,
                "zstd": zstandard.ZSTD_VERSION}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def compress(cache, name, members, level, log=print):
    """The zstd frame of `members` (in order), from the cache when it is there."""
    key = group_key(members, level)
    directory = cache.dir("groups")
    frame, meta = directory / (key + ".zst"), directory / (key + ".json")
    if frame.exists() or meta.exists():
        cached = _cached_group(cache, name, members, frame, meta)
        if cached is not None:
            return cached
    total = sum(m.size for m in members)
    log("compressing group %r: %d files, %.1f MB (zstd -%d)..." % (name, len(members), total / 1e6, level))
    display = progress_display.callback()
    try:
        with fs.atomic_file(frame, temp_dir=cache.tmp) as out:
            size, sha256, csize = _compress_interruptibly(
                [m.source for m in members], out, level, lambda done, of: display("group " + name, done, of))
    finally:
        progress_display.finish(display)
    fs.write_atomic(meta, json.dumps({"size": size, "csize": csize, "sha256": sha256}), temp_dir=cache.tmp)
    return CompressedGroup(name, tuple(members), frame, size, csize, sha256)


class _Stopped(Exception):
    """The compression was abandoned (Ctrl-C in the calling thread)."""


class _StoppableWriter(object):
    def __init__(self, out, stop):
        self.out, self.stop = out, stop

    def write(self, data):
        if self.stop.is_set():
            raise _Stopped()
        return self.out.write(data)

    def flush(self):
        self.out.flush()


def _compress_interruptibly(sources, out, level, progress):
    """compress_group on a worker thread, so that Ctrl-C reaches this thread at once: zstandard's multi-threaded
    compressor can hold one write() for seconds while its jobs run. On an interrupt the worker is told to stop at
    its next write and left behind (a daemon thread); the caller's atomic write removes the temp file."""
    stop = threading.Event()
    result = {}

    def work():
        try:
            result["value"] = compress_group(sources, _StoppableWriter(out, stop), level=level, progress=progress)
        except BaseException as exc:  # noqa: BLE001 -- handed to the calling thread
            result["error"] = exc

    worker = threading.Thread(target=work, name="compress", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except BaseException:
        stop.set()
        raise
    if "error" in result:
        raise result["error"]
    return result["value"]

def _cached_group(cache, name, members, frame, meta):
    """The cached group, its frame checked against the size and sha256 recorded with it; a damaged or half-kept
    entry is dropped (with a notice) and None returned, so the group is compressed again."""
    try:
        info = json.loads(meta.read_text())
        size, csize, sha256 = int(info["size"]), int(info["csize"]), str(info["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        info = None
    if info is not None and frame.is_file() and frame.stat().st_size == csize and file_sha256(frame) == sha256:
        return CompressedGroup(name, tuple(members), frame, size, csize, sha256)
    for path in (frame, meta):
        if path.exists():
            cache.drop(path, "the frame does not match the size and sha256 recorded with it")
    return None

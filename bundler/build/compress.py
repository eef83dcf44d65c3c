"""Compressed groups, cached by (the sha256 of their inputs, their cut into frames, parameters): a rebuild that
changes nothing in a group recompresses none of it. The frames of a group compress at the same time."""

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import zstandard

from bundler.build.cuts import DEFAULT_FRAME_SIZE, frame_counts
from payload import fs
from payload import progress as progress_display
from payload.groups import WINDOW_LOG, compress_frame
from payload.index import Frame


@dataclass(frozen=True)
class Member:
    path: str  # where it lands under the install root
    mode: int
    kind: str  # "file" or "blob"
    source: Path  # the bytes, in the cache
    sha256: str
    size: int


@dataclass(frozen=True)
class CompressedGroup:
    name: str
    members: tuple
    path: Path  # the group's frames, back to back
    frames: tuple  # payload.index.Frame, in order: `offset` in `path`, `count` members from where the one before ends

    @property
    def size(self):
        return sum(f.size for f in self.frames)

    @property
    def csize(self):
        return sum(f.csize for f in self.frames)


def stored_frames(records):
    """Frames of a group file from (members, size, csize, sha256) each, in order: each at the offset where the one
    before it ends."""
    frames, offset = [], 0
    for count, size, csize, sha256 in records:
        frames.append(Frame(offset, csize, size, sha256, count))
        offset += csize
    return tuple(frames)


def group_key(members, level, counts):
    material = {
        "inputs": [[m.sha256, m.size] for m in members],
        "frames": list(counts),
        "level": level,
        "window_log": WINDOW_LOG,
        "long_distance_matching": True,
        "zstd": zstandard.ZSTD_VERSION,
        "threads": "one per frame",
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def compress_all(cache, groups, level, log=print, frame_size=DEFAULT_FRAME_SIZE):
    """compress() of every (name, members) of `groups`, all at once: each frame compresses on one thread
    (compress_frame), so a bundle of several groups would otherwise leave cores idle while each compresses in turn.
    The groups run on worker threads, so that Ctrl-C reaches this thread at once; it stops them all, and each
    removes its temp files before this returns."""
    if len(groups) < 2:
        return [compress(cache, name, members, level, log, frame_size) for name, members in groups]
    stop = threading.Event()
    results = [None] * len(groups)
    # Waited for with events, not Thread.join: a join that Ctrl-C interrupts can leave the thread marked as ended
    # while it runs (CPython 3.11), and its temp files would then outlive the process.
    ended = [threading.Event() for _ in groups]

    def work(number, name, members):
        try:
            results[number] = compress(cache, name, members, level, log, frame_size, stop=stop)
        except BaseException as exc:
            results[number] = exc
            stop.set()
        finally:
            ended[number].set()

    started = []
    try:
        for n, (name, members) in enumerate(groups):
            threading.Thread(target=work, args=(n, name, members), name="compress group", daemon=True).start()
            started.append(ended[n])
        for event in ended:
            while not event.wait(0.1):
                pass
    except BaseException:
        stop.set()
        for event in started:
            event.wait()  # each stops at its next write and removes its temp files
        raise
    failed = [r for r in results if isinstance(r, BaseException) and not isinstance(r, _Stopped)]
    if failed:
        raise failed[0]
    return results


def compress(cache, name, members, level, log=print, frame_size=DEFAULT_FRAME_SIZE, counts=None, stop=None):
    """The zstd frames of `members` (in order), from the cache when they are there: cut into frames of at least
    `frame_size` bytes (bundler/build/cuts.py), or of `counts` members each. `stop` (a threading.Event): set, the
    compression ends at its next write with _Stopped."""
    counts = list(counts) if counts is not None else frame_counts(members, frame_size)
    key = group_key(members, level, counts)
    directory = cache.dir("groups")
    path, meta = directory / (key + ".zst"), directory / (key + ".json")
    if path.exists() or meta.exists():
        cached = _cached_group(cache, name, members, counts, path, meta)
        if cached is not None:
            return cached
    total = sum(m.size for m in members)
    log(
        f"compressing group {name!r}: {len(members)} files, {total / 1e6:.1f} MB in {len(counts)} frame(s) (zstd "
        f"-{level})..."
    )
    display = progress_display.callback()
    try:
        with fs.atomic_file(path, temp_dir=cache.tmp) as out:
            frames = _compress_frames(
                _slices(members, counts),
                out,
                level,
                cache.tmp,
                lambda done, of: display("group " + name, done, of),
                stop or threading.Event(),
            )
    finally:
        progress_display.finish(display)
    record = {"frames": [[f.count, f.size, f.csize, f.sha256] for f in frames]}
    fs.write_atomic(meta, json.dumps(record), temp_dir=cache.tmp)
    return CompressedGroup(name, tuple(members), path, tuple(frames))


def _slices(members, counts):
    if sum(counts) != len(members) or any(c < 0 for c in counts) or not counts:
        raise ValueError(f"a cut of {len(members)} members into frames of {counts}")
    slices, start = [], 0
    for count in counts:
        slices.append(members[start : start + count])
        start += count
    return slices


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _Stopped(Exception):
    """The compression was abandoned (Ctrl-C in the calling thread)."""


class _StoppableWriter:
    def __init__(self, out, stop):
        self.out, self.stop = out, stop

    def write(self, data):
        if self.stop.is_set():
            raise _Stopped()
        return self.out.write(data)

    def flush(self):
        self.out.flush()


def _compress_frames(slices, out, level, temp_dir, progress, stop):
    """Compress each slice of members as one frame, then write them to `out` in order. Several frames compress
    as many at once as there are cores, each on one thread (compress_frame).

    The frames are compressed on worker threads, so that Ctrl-C reaches this thread at once: zstandard's
    compressor can hold one write() for seconds while its jobs run. On an interrupt the workers are told to stop
    at their next write and left behind (daemon threads); their temp files are removed here."""
    cores = _cores()
    running = min(cores, len(slices))
    slots, lock = threading.Semaphore(running), threading.Lock()
    total = sum(m.size for s in slices for m in s)
    done = [0] * len(slices)
    results = [None] * len(slices)
    temps = [fs.temp_name(Path(temp_dir) / f"frame-{n}.zst", temp_dir) for n in range(len(slices))]

    def work(number, members):
        def advance(read, _):
            with lock:
                done[number] = read
                progress(sum(done), total)

        try:
            with slots:
                if stop.is_set():
                    raise _Stopped()
                with open(temps[number], "wb") as frame:
                    size, sha256, csize = compress_frame(
                        [m.source for m in members],
                        _StoppableWriter(frame, stop),
                        level=level,
                        progress=advance,
                    )
            results[number] = (len(members), size, csize, sha256)
        except BaseException as exc:
            results[number] = exc
            stop.set()

    workers = [threading.Thread(target=work, args=(n, s), name="compress", daemon=True) for n, s in enumerate(slices)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            while worker.is_alive():
                worker.join(0.1)
        failed = [r for r in results if isinstance(r, BaseException) and not isinstance(r, _Stopped)]
        if failed:
            raise failed[0]
        if stop.is_set():
            raise _Stopped()  # stopped from outside (compress_all), with nothing failed here
        for temp in temps:
            with open(temp, "rb") as frame:
                while True:
                    chunk = frame.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
        return stored_frames(results)
    except BaseException:
        stop.set()
        raise
    finally:
        for temp in temps:
            fs.safe_unlink(temp)


def _cached_group(cache, name, members, counts, path, meta):
    """The cached group, each frame checked against the size and sha256 recorded with it; a damaged or half-kept
    entry is dropped (with a notice) and None returned, so the group is compressed again."""
    try:
        info = json.loads(meta.read_text())
        frames = tuple(stored_frames((int(m), int(s), int(c), str(h)) for m, s, c, h in info["frames"]))
    except (OSError, ValueError, KeyError, TypeError):
        frames = None
    if (
        frames is not None
        and [f.count for f in frames] == counts
        and path.is_file()
        and path.stat().st_size == sum(f.csize for f in frames)
        and _frames_hold(path, frames)
    ):
        return CompressedGroup(name, tuple(members), path, frames)
    for stale in (path, meta):
        if stale.exists():
            cache.drop(stale, "the frames do not match the sizes and sha256s recorded with them")
    return None


def _frames_hold(path, frames):
    with open(path, "rb") as f:
        for frame in frames:
            sha, left = hashlib.sha256(), frame.csize
            while left:
                chunk = f.read(min(1 << 20, left))
                if not chunk:
                    return False
                sha.update(chunk)
                left -= len(chunk)
            if sha.hexdigest() != frame.sha256:
                return False
    return True

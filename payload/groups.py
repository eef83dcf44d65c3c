"""Group frames: many entries compressed as solid zstd frames, and their verified extraction.

Compression uses a window of at most WINDOW_LOG; the decoder refuses frames that ask for more than
MAX_WINDOW, so a hostile or mistaken bundle cannot make a small device allocate more than that. The frames of a
group are independent (docs/format.md, section 4): extraction decompresses several at once, one decoder per
frame, at most FRAMES_IN_FLIGHT of them (and no more than the cores and the memory allow).
"""

import collections
import errno
import os
import queue
import stat
import threading

import zstandard

from payload import fs
from payload.errors import HostError, IntegrityError, write_error
from payload.fs import CHUNK
from payload.rules import DIR_MODE

# 32 MiB, the bound k3s chose because more "is still too much for a Pi3". The compressor's window
# (WINDOW_LOG) must never exceed the decoder's bound (MAX_WINDOW), or every bundle would be refused.
WINDOW_LOG = 25
MAX_WINDOW = 1 << WINDOW_LOG
# Extraction hands decompressed data between threads in BUFFERS reused buffers of BUFFER_SIZE: no allocation per
# chunk, few hand-overs, a few MiB of memory, and small enough to still be in the shared cache when hashed.
BUFFERS = 4
BUFFER_SIZE = 1 << 20
# Frames decompressed at once: each holds a decoder window (at most MAX_WINDOW) and BUFFERS buffers. Four fit a
# 512 MB board with room to spare, and the memory check below lowers it on a smaller one.
FRAMES_IN_FLIGHT = 4
# Compressed bytes read ahead of the decoders, over all frames in flight. The data area is read once, in order
# (so a split bundle's parts are hashed as they stream by); frames of up to about this size start at once.
READ_AHEAD = 32 << 20
# Buffers a first install may fill before it knows where the group goes (start_extraction, `ahead`): decompression
# runs while the checks before any write do, for at most this many MiB, fewer when memory is short.
AHEAD_BUFFERS = 64
# What a `held` function of extract_group returns for an entry to hash but not write.
VERIFY_ONLY = object()


def _sha256():
    # hashlib is imported here, not at the top: a first install starts decompressing (start_extraction) before the
    # frozen stub has unpacked the OpenSSL that hashlib loads (stub/lazylibs.py), so this module must not wait for it.
    import hashlib

    return hashlib.sha256()


def compress_frame(sources, out, level, progress=None):
    """Compress the files `sources` (paths, in order) as one frame into the binary file `out`, on this thread: the
    same bytes on every machine. zstd's workers would split the frame into jobs that each first load the window
    before them, which at these levels with a 32 MiB window costs about what compressing it does, for the same
    stored size (docs/benchmarks.md); parallelism comes from frames and groups compressed at once instead.

    `progress(bytes read, total)` is called as the input is read. Returns (size, sha256 of the compressed bytes,
    compressed size).
    """
    total = sum(os.path.getsize(p) for p in sources)
    # Long-distance matching finds the repeats far apart in a solid group (binaries that share a runtime) for
    # little CPU: at level 18 it stores what level 19 stores without it (docs/benchmarks.md, figure B).
    params = zstandard.ZstdCompressionParameters.from_level(
        level,
        source_size=total,
        window_log=min(WINDOW_LOG, max(10, total.bit_length())),
        enable_ldm=True,
        write_content_size=True,
        write_checksum=False,
    )
    hashing = HashingWriter(out)
    cctx = zstandard.ZstdCompressor(compression_params=params)
    # Not `with`: its __exit__ would end the frame, compressing all that is buffered, while an exception (Ctrl-C)
    # propagates. A writer dropped unclosed flushes nothing.
    writer = cctx.stream_writer(hashing, size=total, closefd=False)
    done = 0
    for path in sources:
        with open(path, "rb") as src:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                writer.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    writer.close()  # ends the frame; closefd=False leaves `out` open
    return total, hashing.hexdigest(), hashing.count


class HashingWriter:
    def __init__(self, out):
        self.out, self.sha, self.count = out, _sha256(), 0

    def write(self, data):
        self.sha.update(data)
        self.count += len(data)
        return self.out.write(data)

    def flush(self):
        self.out.flush()

    def hexdigest(self):
        return self.sha.hexdigest()


def _host_error(exc, where):
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return HostError(f"cannot write {where} ({exc.strerror}); choose a writable --bundle-dir")
    return write_error(
        exc,
        f"no space left on the device while writing {where}; free space or point --bundle-dir elsewhere",
        lambda reason: f"cannot write {where}: {reason}",
    )


def frames_in_flight(frames):
    """How many frames to decompress at once: one per core, at most FRAMES_IN_FLIGHT, fewer when the memory
    available could not hold their windows twice over."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    per_frame = MAX_WINDOW + BUFFERS * BUFFER_SIZE
    available = _memory_available()
    by_memory = FRAMES_IN_FLIGHT if available is None else (available // 2 - READ_AHEAD) // per_frame
    return max(1, min(frames, cores, FRAMES_IN_FLIGHT, by_memory))


def _memory_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def extract_group(f, data_offset, group, entries, dest=None, progress=None, workers=None, held=None):
    """Decompress `group` from the bundle file `f` and check every frame's and every entry's sha256.

    With `dest`, write each entry under that directory (with its mode, fsynced). `held(entry)` may name a file
    that already holds the entry (same sha256 and mode, in another installed version): the entry is then a hard
    link to it, kept only if that file's bytes equal the verified stream, else a file of its own; or it may be
    VERIFY_ONLY: the entry is hashed, not written. Every mismatch is collected and all are named in one
    IntegrityError at the end. `progress(bytes done, group size)` is called as the group is
    decompressed. A reader thread reads the group's compressed bytes once, in order, and hands them to one job per
    frame (`workers` at once, default frames_in_flight()); a job decompresses on one thread and hashes and writes
    its frame's entries on another, and one more thread fsyncs each finished file meanwhile.
    """
    start_extraction(f, data_offset, group, entries, workers).finish(dest, progress, held)


def start_extraction(f, data_offset, group, entries, workers=None, ahead=False, closing=None):
    """Start reading and decompressing `group` from `f` on threads of their own; `finish` (where it goes, as
    extract_group takes it) or `cancel` must follow. With `ahead`, the decoders go on before `finish` into up to
    AHEAD_BUFFERS buffers of their own, held in memory: a first install decompresses while its checks run, before
    anything is written (stub/install.py). `closing`: a file that `cancel` closes (once `finish` has returned, the
    caller may still read other groups from `f`)."""
    entries_size = sum(e.size for e in entries)
    if entries_size != group.size:
        raise IntegrityError(f"group {group.name!r} holds {group.size} bytes, its entries {entries_size}")
    plan = group.split_entries(entries)
    run = _Extraction(group, workers or frames_in_flight(len(plan)), _ahead_budget() if ahead else 0, closing)
    run.start(f, data_offset, plan)
    return run


def _ahead_budget():
    available = _memory_available()
    return AHEAD_BUFFERS if available is None else max(0, min(AHEAD_BUFFERS, available // 8 // BUFFER_SIZE))


def link_checked(entries, files, dest, held=None):
    """Put every file entry of `entries` under `dest` as a hard link to a file that holds it, without decoding
    anything: the file another installed version holds (`held(entry)`, as extract_group takes it), else
    `files[entry.path]` (a delta update's decoded file, fsynced). Each is checked through the link made: a
    regular file of the entry's size and mode whose bytes hash to its sha256. Returns None when all are in place,
    else the first entry no file held (and the links made are gone: the caller extracts the group instead)."""
    made = []
    for entry in entries:
        path = os.path.join(dest, entry.path)
        candidates = [held(entry) if held is not None and entry.kind == "file" else None, files.get(entry.path)]
        if entry.kind != "file" or not any(_link_if_same(c, path, entry) for c in candidates if c):
            for done in made:
                os.unlink(done)
            return entry
        made.append(path)
    return None


def _link_if_same(found, path, entry):
    """Link `path` to the file `found` and keep the link if that very inode holds the entry's bytes."""
    fd = _link_to(found, path, entry)
    if fd is None:
        return False
    try:
        sha, done = _sha256(), 0
        while done < entry.size:
            chunk = os.pread(fd, min(BUFFER_SIZE, entry.size - done), done)
            if not chunk:
                break
            sha.update(chunk)
            done += len(chunk)
        if done == entry.size and sha.hexdigest() == entry.sha256:
            return True
    except OSError:
        pass
    finally:
        os.close(fd)
    os.unlink(path)
    return False


def _link_to(found, path, entry):
    """Hard-link `path` to `found` when it is a regular file of the entry's size and mode and the link made is
    that very inode. Returns a descriptor open on it, or None when nothing was linked: not such a file, or the link
    refused (another file system, too many links, a file system without links)."""
    try:
        fd = os.open(found, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size or stat.S_IMODE(st.st_mode) != entry.mode:
            raise OSError(errno.EINVAL, "not the same file")
        fs.safe_mkdir(os.path.dirname(path), DIR_MODE)
        os.link(found, path)
        linked = os.lstat(path)
        if (linked.st_ino, linked.st_dev) != (st.st_ino, st.st_dev):  # replaced in between: not the one checked
            os.unlink(path)
            raise OSError(errno.EINVAL, "replaced")
    except OSError:
        os.close(fd)
        return None
    return fd


class _Stopped(Exception):
    """The extraction was abandoned: a job leaves at once."""


class _Extraction:
    """The jobs of one group and what they share, under one condition: the compressed bytes read ahead, the buffers
    lent before the group's destination is known, the bytes decompressed (for the progress), the frames in flight,
    and the first error that stops them all."""

    def __init__(self, group, workers, budget, closing=None):
        self.group, self.workers, self.budget, self.closing = group, workers, budget, closing
        self.source = None  # what the reader reads
        self.cond = threading.Condition()
        self.ahead = self.done = self.active = self.lent = 0
        self.fatal, self.stopping, self.read_all = None, False, False
        self.attached, self.dest, self.syncer, self.holder = False, None, None, None  # set by finish()
        self.jobs, self.reader = [], None

    def start(self, f, data_offset, plan):
        self.source = f
        self.reader = threading.Thread(target=self._reader, args=(f, data_offset, plan), name="read")
        self.reader.daemon = True
        self.reader.start()

    def finish(self, dest=None, progress=None, held=None):
        """Say where the group goes (as extract_group takes `dest` and `held`), then wait for its end, calling
        `progress`; raise what went wrong."""
        syncer = Syncer() if dest is not None else None
        try:
            try:
                with self.cond:
                    self.dest, self.syncer, self.holder, self.attached = dest, syncer, held, True
                    self.cond.notify_all()
                self._wait(lambda: self.read_all, progress)
            except BaseException as exc:
                self.stop(exc)  # Ctrl-C
                raise
            finally:
                self.join()
        finally:
            sync_failure = syncer.close() if syncer is not None else None
        failure = self.failure()
        if failure is not None or sync_failure is not None:
            raise failure or sync_failure
        if progress is not None:  # the jobs may all have ended before this thread last woke to report
            progress(self.group.size, self.group.size)

    def cancel(self):
        """Stop and write nothing (the checks before the install failed, or it is not needed), and close `closing`;
        after finish(), only the closing. Idempotent."""
        self.stop()
        self.join()
        if self.closing is not None:
            self.closing.close()

    def _reader(self, f, data_offset, plan):
        try:
            self.read(f, data_offset, plan)
        except BaseException as exc:  # the data area could not be read, or a bug: never taken for success
            self.stop(exc)
        finally:
            with self.cond:
                self.read_all = True
                self.cond.notify_all()

    def read(self, f, data_offset, plan):
        """Read every frame's bytes in order and feed them to its job; returns once every job has ended."""
        for frame, frame_entries in plan:
            if not self._wait(lambda: self.active < self.workers):
                return
            job = _FrameJob(self, frame, frame_entries)
            with self.cond:
                self.active += 1
                self.jobs.append(job)
            job.start()
            f.seek(data_offset + frame.offset)
            left = frame.csize
            while left:
                size = min(CHUNK, left)
                if not self._wait(lambda size=size: not self.ahead or self.ahead + size <= READ_AHEAD):
                    return
                chunk = self._read(f, size)
                left -= len(chunk)
                job.feed(chunk, last=not left)
            if not frame.csize:
                job.feed(b"", last=True)
        self._wait(lambda: not self.active)

    def _read(self, f, size):
        try:
            chunk = f.read(size)
        except OSError as exc:
            raise IntegrityError(f"cannot read group {self.group.name!r}: {exc.strerror or exc}") from None
        if not chunk:
            raise IntegrityError(f"group {self.group.name!r} is cut short; the bundle is truncated, copy it again")
        return chunk

    def _wait(self, ready, progress=None):
        """Wait until `ready()` (under the lock), calling `progress` meanwhile; False once the jobs must stop."""
        while True:
            with self.cond:
                if self.stopping:
                    return False
                if ready():
                    return True
                self.cond.wait()
                done = self.done
            if progress is not None:
                progress(done, self.group.size)

    def wait_attached(self):
        """The writing side of a job waits here for finish(); False when the jobs must stop first."""
        with self.cond:
            while not self.attached and not self.stopping:
                self.cond.wait()
            return not self.stopping

    def lend(self):
        """A buffer of its own for a decoder whose buffers are all full before finish(), within the budget; None
        once finish() was called (the writing side gives buffers back) or the budget is spent."""
        with self.cond:
            if self.attached or self.lent >= self.budget:
                return None
            self.lent += 1
        return bytearray(BUFFER_SIZE)

    def stop(self, exc=None):
        """Stop every job: after `exc` (a fatal error of a job, or of this thread), or at the end."""
        with self.cond:
            if exc is not None and self.fatal is None:
                self.fatal = exc
            self.stopping = True
            self.cond.notify_all()

    def join(self):
        self.stop()
        if self.reader is not None:
            self.reader.join()
        for job in self.jobs:
            job.join()

    def failure(self):
        """The error of the whole group: the first fatal one, else every frame and entry that did not match."""
        if self.fatal is not None:
            return self.fatal
        frames = [job.where for job in self.jobs if job.sha_mismatch]
        if frames:
            return IntegrityError(
                "{} {} not match {} sha256; the bundle is damaged, copy it again".format(
                    ", ".join(frames), "does" if len(frames) == 1 else "do", "its" if len(frames) == 1 else "their"
                )
            )
        entries = [path for job in self.jobs if job.splitter is not None for path in job.splitter.mismatched]
        if entries:
            return IntegrityError(
                "sha256 mismatch in {}; the bundle is damaged, copy it again".format(", ".join(entries))
            )
        return None

    def decompressed(self, size):
        with self.cond:
            self.done += size
            self.cond.notify_all()

    def ended(self, job, failure):
        if failure is not None:
            self.stop(failure)
        with self.cond:
            self.active -= 1
            self.cond.notify_all()


class _FrameJob:
    """One frame: a thread decompresses it into reused buffers, another hashes its compressed bytes and hashes and
    writes its entries, from finish() on."""

    def __init__(self, run, frame, entries):
        self.run, self.frame, self.entries, self.where = run, frame, entries, run.group.label(frame)
        self.inbox, self.held, self.last = [], 0, False  # compressed chunks fed, not yet read (under run.cond)
        self.taken = collections.deque()  # compressed chunks the decoder read, not yet hashed
        self.sha_mismatch, self.splitter = False, None
        self.filled, self.free = queue.Queue(), queue.Queue()
        for _ in range(BUFFERS):
            self.free.put(bytearray(BUFFER_SIZE))
        self.decoder = threading.Thread(target=self._decompress, name="decompress")
        self.consumer = threading.Thread(target=self._consume, name="write")
        self.decoder.daemon = self.consumer.daemon = True

    def start(self):
        self.decoder.start()
        self.consumer.start()

    def join(self):
        self.consumer.join()

    def feed(self, chunk, last):
        """Reader side: queue a chunk of the frame's compressed bytes (its bytes count as read ahead)."""
        with self.run.cond:
            if self.last:  # the decoder has ended: nobody will read it
                return
            self.inbox.append(chunk)
            self.run.ahead += len(chunk)
            self.last = last
            self.run.cond.notify_all()

    def read(self, size):
        """The decoder's source: the next chunk fed (never more than CHUNK), b"" at the end of the frame."""
        with self.run.cond:
            self.run.ahead -= self.held
            self.held = 0
            self.run.cond.notify_all()
            while not self.inbox and not self.last and not self.run.stopping:
                self.run.cond.wait()
            if self.run.stopping:
                raise _Stopped()
            if not self.inbox:
                return b""
            chunk = self.inbox.pop(0)
            self.held = len(chunk)
        self.taken.append(chunk)  # hashed on the writing side: decompression is the longest part
        return chunk

    def _close_input(self):
        with self.run.cond:
            self.run.ahead -= self.held + sum(len(c) for c in self.inbox)
            self.held, self.inbox, self.last = 0, [], True
            self.run.cond.notify_all()

    def _buffer(self):
        try:
            return self.free.get_nowait()
        except queue.Empty:
            return self.run.lend() or self.free.get()

    def _decompress(self):
        failure, frame = None, self.frame
        try:
            dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
            # Across frames: bytes after the frame are decoded too, and refused (a second frame, or no frame).
            stream = dctx.stream_reader(self, read_size=CHUNK, read_across_frames=True)
            produced = 0
            while True:
                buf = self._buffer()
                if buf is None:
                    return
                size = stream.readinto(buf)  # fills the whole buffer unless the frame ends
                if not size:
                    break
                produced += size
                if produced > frame.size:
                    raise IntegrityError(f"{self.where} decompresses to more than its {frame.size} bytes")
                self.filled.put((buf, size))
            if produced != frame.size:
                raise IntegrityError(f"{self.where} decompresses to {produced} bytes, expected {frame.size}")
        except _Stopped:
            pass
        except zstandard.ZstdError as exc:
            failure = IntegrityError(f"{self.where} does not decompress ({exc}); the bundle is damaged")
        except Exception as exc:  # a BundleError, a bug or MemoryError: never taken for success
            failure = exc
        finally:
            self._close_input()
            self.filled.put((None, failure))

    def _consume(self):
        failure, sha = None, None
        try:
            if not self.run.wait_attached():
                return
            sha = _sha256()
            self.splitter = EntrySplitter(self.entries, self.run.dest, self.run.syncer, self.run.holder)
            self.splitter.next_entry()
            while True:
                buf, size = self.filled.get()
                while self.taken:
                    sha.update(self.taken.popleft())
                if buf is None:
                    failure = size
                    break
                self.splitter.feed(memoryview(buf)[:size])
                self.free.put(buf)
                self.run.decompressed(size)
        except Exception as exc:  # HostError from a write, IntegrityError, a bug
            failure = exc
        finally:
            if failure is not None:
                self.run.stop(failure)  # before waiting: the decoder may be waiting for bytes the reader holds
            self.free.put(None)  # stops the decoder if this thread gave up early
            self.decoder.join()
            if self.splitter is not None:
                self.splitter.close()
            if failure is None and sha is not None and not self.run.stopping:
                self.sha_mismatch = sha.hexdigest() != self.frame.sha256
            self.run.ended(self, failure)


class EntrySplitter:
    """Cuts the decompressed stream into entries, hashes each one, and writes it when there is a `dest`: as a file
    of its own, or as a hard link to a file `held` names, compared byte for byte with the stream."""

    def __init__(self, entries, dest, syncer, held=None):
        self.entries, self.dest, self.syncer, self.held, self.mismatched = iter(entries), dest, syncer, held, []
        self.entry, self.fd, self.same, self.pos = None, None, None, 0

    def feed(self, view):
        pos, end = 0, len(view)
        while pos < end:
            if self.entry is None:
                raise IntegrityError("the group holds more bytes than its entries")
            piece = view[pos : pos + self.left]
            self.sha.update(piece)
            if self.same is not None:
                self._compare(piece)
            elif self.fd is not None:
                write_all(self.fd, piece, self.entry.path)
            pos += len(piece)
            self.left -= len(piece)
            if not self.left:
                self.next_entry()

    def next_entry(self):
        """Finish the current entry and any empty ones after it; open the next one that has bytes."""
        while True:
            if self.entry is not None:
                if self.sha.hexdigest() != self.entry.sha256:
                    self.mismatched.append(self.entry.path)
                if self.fd is not None:
                    self.syncer.put(self.fd, self.entry)
                    self.fd = None
                self._close_same()  # every byte matched: the link stays
            self.entry = next(self.entries, None)
            if self.entry is None:
                return
            self.sha, self.left = _sha256(), self.entry.size
            if self.dest is not None:
                found = self.held(self.entry) if self.held is not None and self.left else None
                if found is VERIFY_ONLY:
                    pass
                elif found is None or not self._link(found):
                    self.fd = open_entry(self.dest, self.entry)
            if self.left:
                return

    def _link(self, found):
        """Make the entry a hard link to `found` (_link_to); the stream is then compared with it. False (write a
        file instead) when it cannot be."""
        fd = _link_to(found, os.path.join(self.dest, self.entry.path), self.entry)
        if fd is None:
            return False
        self.same, self.pos = fd, 0
        return True

    def _compare(self, piece):
        """The held file must hold exactly the verified bytes; at the first difference the link is replaced by a
        file of its own: the bytes before it (equal to the stream's) copied from the held file, then the stream."""
        theirs = os.pread(self.same, len(piece), self.pos)
        if theirs == piece:
            self.pos += len(piece)
            return
        path = os.path.join(self.dest, self.entry.path)
        try:
            os.unlink(path)
        except OSError as exc:
            raise _host_error(exc, self.entry.path) from None
        self.fd = open_entry(self.dest, self.entry)
        done = 0
        while done < self.pos:
            chunk = os.pread(self.same, min(CHUNK, self.pos - done), done)
            if not chunk:
                raise IntegrityError(f"{path} changed while it was compared; install again")
            write_all(self.fd, memoryview(chunk), self.entry.path)
            done += len(chunk)
        self._close_same()
        write_all(self.fd, piece, self.entry.path)

    def _close_same(self):
        if self.same is not None:
            os.close(self.same)
            self.same = None

    def close(self):
        """Close the files left open (by a failure); finished files are the syncer's to close."""
        self._close_same()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Syncer:
    """Gives finished files their mode and fsyncs them on a thread of its own, while decompression goes on."""

    def __init__(self):
        self.files, self.failure = queue.Queue(), None
        self.thread = threading.Thread(target=self._run)
        self.thread.daemon = True
        self.thread.start()

    def put(self, fd, entry):
        self.files.put((fd, entry))

    def _run(self):
        while True:
            fd, entry = self.files.get()
            if fd is None:
                return
            try:
                if self.failure is None:
                    os.fchmod(fd, entry.mode)
                    os.fsync(fd)
            except OSError as exc:
                self.failure = _host_error(exc, entry.path)
            finally:
                os.close(fd)

    def close(self):
        self.files.put((None, None))
        self.thread.join()
        return self.failure


def write_all(fd, view, where):
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        raise _host_error(exc, where) from None


def open_entry(dest, entry):
    path = os.path.join(dest, entry.path)
    try:
        fs.safe_mkdir(os.path.dirname(path), DIR_MODE)  # not the umask: nobody else may add or swap a file
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        raise _host_error(exc, entry.path) from None

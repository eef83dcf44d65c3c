"""Group frames: many entries compressed as one solid zstd stream, and their verified extraction.

Compression uses a window of at most WINDOW_LOG; the decoder refuses frames that ask for more than
MAX_WINDOW, so a hostile or mistaken bundle cannot make a small device allocate more than that.
"""

import errno
import hashlib
import os
import queue
import threading

import zstandard

from .errors import BundleError, HostError, IntegrityError

# 32 MiB, the bound k3s chose because more "is still too much for a Pi3". The compressor's window
# (WINDOW_LOG) must never exceed the decoder's bound (MAX_WINDOW), or every bundle would be refused.
WINDOW_LOG = 25
MAX_WINDOW = 1 << WINDOW_LOG
CHUNK = 1 << 20
# zstd's default job for a 32 MiB window is 128 MiB, which leaves one core idle on most groups.
JOB_SIZE = 32 << 20
# Extraction hands decompressed data between threads in BUFFERS reused buffers of BUFFER_SIZE: no allocation per
# chunk, few hand-overs, a few MiB of memory, and small enough to still be in the shared cache when hashed.
BUFFERS = 4
BUFFER_SIZE = 1 << 20


def compress_group(sources, out, level=19, threads=-1, progress=None):
    """Compress the files `sources` (paths, in order) as one frame into the binary file `out`.

    `progress(bytes read, total)` is called as the input is read. Returns (size, sha256 of the compressed bytes,
    compressed size).
    """
    total = sum(os.path.getsize(p) for p in sources)
    params = zstandard.ZstdCompressionParameters.from_level(
        level, source_size=total, window_log=min(WINDOW_LOG, max(10, total.bit_length())),
        threads=threads, job_size=JOB_SIZE, write_content_size=True, write_checksum=False)
    hashing = _HashingWriter(out)
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


class _HashingWriter(object):
    def __init__(self, out):
        self.out, self.sha, self.count = out, hashlib.sha256(), 0

    def write(self, data):
        self.sha.update(data)
        self.count += len(data)
        return self.out.write(data)

    def flush(self):
        self.out.flush()

    def hexdigest(self):
        return self.sha.hexdigest()


def _host_error(exc, where):
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return HostError("no space left on the device while writing %s; free space or point --bundle-dir elsewhere" % where)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return HostError("cannot write %s (%s); choose a writable --bundle-dir" % (where, exc.strerror))
    return HostError("cannot write %s: %s" % (where, exc.strerror))


def extract_group(f, data_offset, group, entries, dest=None, progress=None):
    """Decompress `group` from the bundle file `f` and check every entry's sha256.

    With `dest`, write each entry under that directory (with its mode, fsynced). Every mismatch is
    collected and all are named in one IntegrityError at the end; the group's own checksum is checked too.
    `progress(bytes done, group size)` is called as the group is decompressed.
    Decompression, most of the work, has a thread to itself. This thread hashes the compressed and the
    decompressed bytes and writes the files, and a third one fsyncs each finished file meanwhile.
    """
    entries_size = sum(e.size for e in entries)
    if entries_size != group.size:
        raise IntegrityError("group %r holds %d bytes, its entries %d" % (group.name, group.size, entries_size))
    filled, free = queue.Queue(), queue.Queue()
    for _ in range(BUFFERS):
        free.put(bytearray(BUFFER_SIZE))
    reader = threading.Thread(target=_decompress, args=(f, data_offset, group, filled, free))
    reader.daemon = True
    reader.start()
    frame_sha = hashlib.sha256()
    splitter = _Splitter(entries, dest)
    failure = None
    done = 0
    try:
        splitter.next_entry()
        while True:
            kind, data, size = filled.get()
            if kind is _FRAME:
                frame_sha.update(data)
            elif kind is _DATA:
                splitter.feed(memoryview(data)[:size])
                free.put(data)
                done += size
                if progress is not None:
                    progress(done, group.size)
            else:
                failure = data
                break
    finally:
        free.put(None)  # stops the reader thread if this one gave up early
        reader.join()
        sync_failure = splitter.close()
    if failure is None and frame_sha.hexdigest() != group.sha256:
        failure = IntegrityError("group %r does not match its sha256; the bundle is damaged, copy it again" % group.name)
    if failure is None and splitter.mismatched:
        failure = IntegrityError("sha256 mismatch in %s; the bundle is damaged, copy it again" % ", ".join(splitter.mismatched))
    if failure is not None or sync_failure is not None:
        raise failure or sync_failure


_FRAME, _DATA, _END = "frame", "data", "end"


def _decompress(f, data_offset, group, filled, free):
    """Reader thread: decompress the group's frame into buffers taken from `free`, and put them on `filled`.

    The compressed bytes go on `filled` too, for the other thread to hash. Ends with (_END, error or None, 0).
    """
    failure = None
    try:
        source = _FrameSource(f, data_offset + group.offset, group, filled)
        dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
        stream = dctx.stream_reader(source, read_size=BUFFER_SIZE, read_across_frames=False)
        produced = 0
        while True:
            buf = free.get()
            if buf is None:
                return
            size = stream.readinto(buf)  # fills the whole buffer unless the frame ends
            if not size:
                break
            produced += size
            if produced > group.size:
                raise IntegrityError("group %r decompresses to more than its %d bytes" % (group.name, group.size))
            filled.put((_DATA, buf, size))
        if produced != group.size or source.left:
            raise IntegrityError("group %r decompresses to %d bytes, expected %d" % (group.name, produced, group.size))
    except zstandard.ZstdError as exc:
        failure = IntegrityError("group %r does not decompress (%s); the bundle is damaged" % (group.name, exc))
    except BundleError as exc:
        failure = exc
    except OSError as exc:
        failure = IntegrityError("cannot read group %r: %s" % (group.name, exc.strerror))
    except Exception as exc:  # a bug or MemoryError: raised again in the calling thread, never taken for success
        failure = exc
    finally:
        filled.put((_END, failure, 0))


class _FrameSource(object):
    """The group's compressed bytes as a file for the decompressor; each chunk read is also put on `filled`."""

    def __init__(self, f, start, group, filled):
        f.seek(start)
        self.f, self.group, self.filled, self.left = f, group, filled, group.csize

    def read(self, size):
        data = self.f.read(min(size, self.left))
        if data:
            self.left -= len(data)
            self.filled.put((_FRAME, data, 0))
        elif self.left:
            raise IntegrityError("group %r is cut short; the bundle is truncated, copy it again" % self.group.name)
        return data


class _Splitter(object):
    """Cuts the decompressed stream into entries, hashes each one, and writes it when there is a `dest`."""

    def __init__(self, entries, dest):
        self.entries, self.dest, self.mismatched = iter(entries), dest, []
        self.syncer = _Syncer() if dest is not None else None
        self.entry, self.fd = None, None

    def feed(self, view):
        pos, end = 0, len(view)
        while pos < end:
            if self.entry is None:
                raise IntegrityError("the group holds more bytes than its entries")
            piece = view[pos:pos + self.left]
            self.sha.update(piece)
            if self.fd is not None:
                _write_all(self.fd, piece, self.entry.path)
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
            self.entry = next(self.entries, None)
            if self.entry is None:
                return
            self.sha, self.left = hashlib.sha256(), self.entry.size
            if self.dest is not None:
                self.fd = _open_entry(self.dest, self.entry)
            if self.left:
                return

    def close(self):
        """Close the file left open, wait for every fsync, and return the first HostError of those, if any."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        return self.syncer.close() if self.syncer is not None else None


class _Syncer(object):
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


def _write_all(fd, view, where):
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise _host_error(exc, where)


def _open_entry(dest, entry):
    path = os.path.join(dest, entry.path)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        raise _host_error(exc, entry.path)

"""Group frames: many entries compressed as one solid zstd stream, and their verified extraction.

Compression uses a window of at most WINDOW_LOG; the decoder refuses frames that ask for more than
MAX_WINDOW, so a hostile or mistaken bundle cannot make a small device allocate more than that.
"""

import errno
import hashlib
import os
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


def compress_group(sources, out, level=19, threads=-1):
    """Compress the files `sources` (paths, in order) as one frame into the binary file `out`.

    Returns (size, sha256 of the compressed bytes, compressed size).
    """
    total = sum(os.path.getsize(p) for p in sources)
    params = zstandard.ZstdCompressionParameters.from_level(
        level, source_size=total, window_log=min(WINDOW_LOG, max(10, total.bit_length())),
        threads=threads, job_size=JOB_SIZE, write_content_size=True, write_checksum=False)
    hashing = _HashingWriter(out)
    cctx = zstandard.ZstdCompressor(compression_params=params)
    with cctx.stream_writer(hashing, size=total, closefd=False) as writer:
        for path in sources:
            with open(path, "rb") as src:
                while True:
                    chunk = src.read(CHUNK)
                    if not chunk:
                        break
                    writer.write(chunk)
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


def _decompressed_chunks(f, start, group, out_queue, failure):
    """Reader thread: read the group's frame, check its sha256, decompress, and hand chunks on."""
    try:
        sha = hashlib.sha256()
        dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
        dobj = dctx.decompressobj()
        f.seek(start + group.offset)
        left = group.csize
        produced = 0
        while left:
            data = f.read(min(CHUNK, left))
            if not data:
                raise IntegrityError("group %r is cut short; the bundle is truncated, copy it again" % group.name)
            left -= len(data)
            sha.update(data)
            out = dobj.decompress(data)
            produced += len(out)
            if produced > group.size:
                raise IntegrityError("group %r decompresses to more than its %d bytes" % (group.name, group.size))
            if out:
                out_queue.put(out)
        if sha.hexdigest() != group.sha256:
            raise IntegrityError("group %r does not match its sha256; the bundle is damaged, copy it again" % group.name)
        if produced != group.size or not dobj.eof:
            raise IntegrityError("group %r decompresses to %d bytes, expected %d" % (group.name, produced, group.size))
    except zstandard.ZstdError as exc:
        failure.append(IntegrityError("group %r does not decompress (%s); the bundle is damaged" % (group.name, exc)))
    except BundleError as exc:
        failure.append(exc)
    except OSError as exc:
        failure.append(IntegrityError("cannot read group %r: %s" % (group.name, exc.strerror)))
    finally:
        out_queue.put(None)


def extract_group(f, data_offset, group, entries, dest=None):
    """Decompress `group` from the bundle file `f` and check every entry's sha256.

    With `dest`, write each entry under that directory (with its mode, fsynced). Every mismatch is
    collected and all are named in one IntegrityError at the end; the group's own checksum is checked too.
    Decompression runs in a second thread so that hashing and writing use the other core.
    """
    import queue

    chunks = queue.Queue(maxsize=16)
    failure = []
    reader = threading.Thread(target=_decompressed_chunks, args=(f, data_offset, group, chunks, failure))
    reader.daemon = True
    reader.start()
    mismatched = []
    try:
        _split_into_entries(chunks, entries, dest, mismatched)
    finally:
        while reader.is_alive():
            try:
                chunks.get(timeout=0.1)
            except queue.Empty:
                pass
        reader.join()
    if failure:
        raise failure[0]
    if mismatched:
        raise IntegrityError("sha256 mismatch in %s; the bundle is damaged, copy it again" % ", ".join(mismatched))


class _ChunkReader(object):
    def __init__(self, chunks):
        self.chunks, self.view = chunks, memoryview(b"")

    def take(self, limit):
        """Up to `limit` bytes of the stream, or None once it has ended."""
        if not self.view:
            data = self.chunks.get()
            if data is None:
                self.chunks.put(None)
                return None
            self.view = memoryview(data)
        piece, self.view = self.view[:limit], self.view[limit:]
        return piece


def _split_into_entries(chunks, entries, dest, mismatched):
    reader = _ChunkReader(chunks)
    for entry in entries:
        sha = hashlib.sha256()
        out = _open_entry(dest, entry) if dest is not None else None
        left = entry.size
        try:
            while left:
                piece = reader.take(left)
                if piece is None:
                    return  # the stream ended early: the reader thread says why
                sha.update(piece)
                if out is not None:
                    try:
                        out.write(piece)
                    except OSError as exc:
                        raise _host_error(exc, entry.path)
                left -= len(piece)
            _finish(entry, sha, out, mismatched)
            out = None
        finally:
            if out is not None:
                out.close()


def _open_entry(dest, entry):
    path = os.path.join(dest, entry.path)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        raise _host_error(exc, entry.path)
    return os.fdopen(fd, "wb")


def _finish(entry, sha, out, mismatched):
    if sha.hexdigest() != entry.sha256:
        mismatched.append(entry.path)
    if out is not None:
        try:
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), entry.mode)
        except OSError as exc:
            raise _host_error(exc, entry.path)
        finally:
            out.close()

"""Patches between two versions of a group's content, in zstd's `--patch-from` style: the old content is the
reference (a prefix the new content's matches may reach into), long-distance matching finds them, and the window
covers reference plus new content. payload/delta.py applies them on the device.

python-zstandard's ZstdCompressionDict loads a raw-content dictionary through a CDict, which long-distance
matching does not search: measured on containerd deb12u2 -> deb12u3 (83 MB) that gives a 9.8 MB patch. A
prefix (ZSTD_CCtx_refPrefix, what the zstd CLI's --patch-from uses) gives 1.7 MB, so this module calls libzstd
through zstandard's cffi backend, which exposes it. The decoder needs no such thing: a raw-content dictionary
decodes a prefix-compressed frame (payload/delta.py).
"""

import hashlib
import os

from payload import delta as rules
from payload.errors import BundleError, UsageError

CHUNK = 1 << 20
LEVEL = 19


class PatchMade(object):
    """A patch just written: its sha256 and size, and what applying it needs (payload/delta.py)."""

    def __init__(self, sha256, size, reference_size, target_size, window_log):
        self.sha256, self.size = sha256, size
        self.reference_size, self.target_size, self.window_log = reference_size, target_size, window_log

    @property
    def memory(self):
        return rules.decode_memory(self.reference_size, self.window_log, self.target_size)


def _cffi():
    try:
        from zstandard import backend_cffi
    except ImportError as exc:  # zstandard built without its cffi backend, or no cffi
        raise UsageError("making deltas needs zstandard's cffi backend (pip install cffi): %s" % exc)
    return backend_cffi.lib, backend_cffi.ffi


def read_files(paths, size=None):
    """The concatenated bytes of `paths`, in one buffer (a prefix must be contiguous)."""
    total = sum(os.path.getsize(p) for p in paths) if size is None else size
    buf = bytearray(total)
    view, pos = memoryview(buf), 0
    for path in paths:
        with open(path, "rb") as f:
            while True:
                n = f.readinto(view[pos:])
                if not n:
                    break
                pos += n
    if pos != total:
        raise BundleError("the reference files changed while being read (%d bytes, expected %d)" % (pos, total))
    return buf


def make_patch(reference, targets, out, level=LEVEL, threads=0):
    """Write to the binary file `out` a patch that turns `reference` (bytes-like: the old content) into the
    concatenated files `targets` (the new content). Returns a PatchMade."""
    lib, ffi = _cffi()
    target_size = sum(os.path.getsize(p) for p in targets)
    window_log = rules.patch_window_log(len(reference), target_size)
    cctx = ffi.gc(lib.ZSTD_createCCtx(), lib.ZSTD_freeCCtx)

    def check(result, what):
        if lib.ZSTD_isError(result):
            raise BundleError("zstd %s: %s" % (what, ffi.string(lib.ZSTD_getErrorName(result)).decode()))
        return result

    for param, value in ((lib.ZSTD_c_compressionLevel, level), (lib.ZSTD_c_windowLog, window_log),
                         (lib.ZSTD_c_enableLongDistanceMatching, 1), (lib.ZSTD_c_checksumFlag, 0),
                         (lib.ZSTD_c_contentSizeFlag, 1), (lib.ZSTD_c_nbWorkers, threads)):
        check(lib.ZSTD_CCtx_setParameter(cctx, param, value), "parameter")
    check(lib.ZSTD_CCtx_setPledgedSrcSize(cctx, target_size), "source size")
    ref = ffi.from_buffer(reference)
    check(lib.ZSTD_CCtx_refPrefix(cctx, ref, len(reference)), "reference")
    out_size = lib.ZSTD_CStreamOutSize()
    out_buf = ffi.new("char[]", out_size)
    output = ffi.new("ZSTD_outBuffer *")
    inp = ffi.new("ZSTD_inBuffer *")
    sha, written = hashlib.sha256(), 0

    def drain(mode):
        nonlocal written
        while True:
            output.dst, output.size, output.pos = out_buf, out_size, 0
            left = check(lib.ZSTD_compressStream2(cctx, output, inp, mode), "compression")
            chunk = ffi.buffer(out_buf, output.pos)[:]
            if chunk:
                out.write(chunk)
                sha.update(chunk)
                written += len(chunk)
            if mode == lib.ZSTD_e_end:
                if not left:
                    return
            elif inp.pos == inp.size:
                return

    for path in targets:
        with open(path, "rb") as f:
            while True:
                data = f.read(CHUNK)
                if not data:
                    break
                keep = ffi.from_buffer(data)
                inp.src, inp.size, inp.pos = keep, len(data), 0
                drain(lib.ZSTD_e_continue)
    inp.src, inp.size, inp.pos = ffi.NULL, 0, 0
    drain(lib.ZSTD_e_end)
    del ref
    return PatchMade(sha.hexdigest(), written, len(reference), target_size, window_log)

"""Patches between two versions of a group's content, in zstd's `--patch-from` style: the old content is the
reference (a prefix the new content's matches may reach into), long-distance matching finds them, and the window
covers reference plus new content. payload/delta.py applies them on the device.

python-zstandard's ZstdCompressionDict loads a raw-content dictionary through a CDict, which long-distance matching
does not search: its patches come out several times larger than with a prefix (ZSTD_CCtx_refPrefix, what the zstd
CLI's --patch-from uses), so this module calls libzstd through zstandard's cffi backend, which exposes it. The
decoder needs no such thing: a raw-content dictionary decodes a prefix-compressed frame (payload/delta.py).
"""

import hashlib
import io
import os

from payload import delta as rules
from payload.errors import BundleError, UsageError
from payload.fs import CHUNK
from payload.rules import SBOM_GROUP

LEVEL = 19


class PatchMade:
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
        raise UsageError(f"making deltas needs zstandard's cffi backend (pip install cffi): {exc}") from None
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
        raise BundleError(f"the reference files changed while being read ({pos} bytes, expected {total})")
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
            raise BundleError(f"zstd {what}: {ffi.string(lib.ZSTD_getErrorName(result)).decode()}")
        return result

    for param, value in (
        (lib.ZSTD_c_compressionLevel, level),
        (lib.ZSTD_c_windowLog, window_log),
        (lib.ZSTD_c_enableLongDistanceMatching, 1),
        (lib.ZSTD_c_checksumFlag, 0),
        (lib.ZSTD_c_contentSizeFlag, 1),
        (lib.ZSTD_c_nbWorkers, threads),
    ):
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
            for data in iter(lambda: f.read(CHUNK), b""):
                keep = ffi.from_buffer(data)
                inp.src, inp.size, inp.pos = keep, len(data), 0
                drain(lib.ZSTD_e_continue)
    inp.src, inp.size, inp.pos = ffi.NULL, 0, 0
    drain(lib.ZSTD_e_end)
    del ref
    return PatchMade(sha.hexdigest(), written, len(reference), target_size, window_log)


# Publishing: `bundler push --delta-from OLD`


def _content(path, data_offset, frame, out=None):
    """The decompressed content of `frame` (payload.index.Frame) of the bundle file at `path`: into the binary
    file `out`, or returned as a bytearray. The frame is checked against its sha256 first."""
    import zstandard

    from payload.errors import IntegrityError
    from payload.groups import MAX_WINDOW

    with open(path, "rb") as f:
        f.seek(data_offset + frame.offset)
        data = f.read(frame.csize)
    if len(data) != frame.csize or hashlib.sha256(data).hexdigest() != frame.sha256:
        raise IntegrityError(f"{path}: a frame does not match its sha256; the bundle is damaged")
    reader = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).stream_reader(io.BytesIO(data))
    if out is None:
        buf = bytearray(frame.size)
        view, pos = memoryview(buf), 0
        while pos < frame.size:
            n = reader.readinto(view[pos:])
            if not n:
                break
            pos += n
        return buf
    while True:
        chunk = reader.read(CHUNK)
        if not chunk:
            return out
        out.write(chunk)


def _old_files(path, payload, entries):
    """The bytes of `entries` (of the bundle at `path`) one after another: the reference of a patch."""
    index = payload.index
    wanted = dict((e.path, None) for e in entries)
    for group in index.groups:
        for frame, members in group.split_entries(index.entries_of(group.name)):
            if not any(m.path in wanted for m in members):
                continue
            content = _content(path, payload.data_offset, frame)
            for m in members:
                if m.path in wanted:
                    wanted[m.path] = bytes(content[m.offset - frame.start : m.offset - frame.start + m.size])
            del content
    buf = bytearray()
    for e in entries:
        buf += wanted[e.path]
    return buf


def _old_bundle(old, client, work, arch, variant, log):
    """The path of the older bundle OLD names: a file, or a registry reference pulled into `work`."""
    from pathlib import Path

    if Path(old).is_file():
        return Path(old)
    from bundler.fleet.pull import pull

    output = Path(work) / "older"
    log(f"pulling {old} to make deltas from it...")
    pull(old, output, client, arch=arch, variant=variant, log=lambda *a: None)
    return output


def publish(client, ref, new_path, new_payload, new_manifest, olds, log=print):
    """For each older bundle in `olds` (files or references), a patch for every group of the new bundle that
    changed, published as a delta manifest whose subject is `new_manifest`, listed in the referrers tag. Returns
    [(old version, number of patches, bytes of patches)]."""
    import tempfile

    from bundler.fleet.referrers import attach, push_empty_config
    from payload.layout import open_payload
    from payload.oci import artifact
    from payload.sizes import size_text

    new_index = new_payload.index
    done = []
    with tempfile.TemporaryDirectory(prefix="bundler-delta-") as work:
        push_empty_config(client, ref)
        for n, old in enumerate(olds):
            old_dir = os.path.join(work, f"old{n}")
            os.mkdir(old_dir)
            old_path = _old_bundle(old, client, old_dir, new_index.arch, new_index.variant, log)
            with open(old_path, "rb") as f:
                old_payload = open_payload(str(old_path), f)
            old_index = old_payload.index
            if old_index.name != new_index.name:
                raise UsageError(f"--delta-from {old} is a bundle of {old_index.name}, not an older {new_index.name}")
            if (old_index.arch, old_index.variant) != (new_index.arch, new_index.variant):
                log(
                    f"{new_path}: --delta-from {old} is for {old_index.arch}/{old_index.variant}, not "
                    f"{new_index.arch}/{new_index.variant}; no delta from it to this one"
                )
                continue
            if old_payload.split:
                raise UsageError(f"--delta-from {old} is a split bundle; name the executable made without --split")
            patches = []
            for group, frame in changed_frames(old_index, new_index):
                made = patch_frame(old_path, old_payload, new_path, new_payload, group, frame, work, log)
                if made is None:
                    continue
                record, patch_file, patch_sha256, patch_size = made
                digest = "sha256:" + patch_sha256
                client.upload_blob(
                    ref,
                    digest,
                    patch_size,
                    lambda offset, p=patch_file: _open_at(p, offset),
                    label="pushing delta of " + group.name,
                )
                patches.append((record, digest, patch_size))
            if not patches:
                log(f"{new_path}: no group changed that a delta would carry; no delta from {old_index.version}")
                continue
            manifest = artifact.delta_manifest_bytes(
                new_manifest, old_payload.bundle_id, new_payload.bundle_id, patches
            )
            attach(client, ref, manifest, same=(artifact.FROM_BUNDLE,))
            total = sum(size for _, _, size in patches)
            log(
                f"{new_path}: delta from {old_index.name} {old_index.version}: {len(patches)} patch(es), "
                f"{size_text(total)}, for {', '.join(p.describe() for p, _, _ in patches)}"
            )
            done.append((old_index.version, len(patches), total))
    return done


def changed_frames(old_index, new_index):
    """(group, frame) of the new index that the old one does not hold and a delta would carry: not the SBOM's (a few
    KB, new in every release: fetched whole)."""
    have = set(frame.sha256 for _, frame in old_index.frames())
    return [(g, f) for g, f in new_index.frames() if f.sha256 not in have and g.name != SBOM_GROUP]


def patch_frame(old_path, old_payload, new_path, new_payload, group, frame, work, log):
    """(Patch record, patch file, its sha256, its size) for the new `frame` of `group` against the old version of
    its files, or None (said why). A device checks what the patch gives against the signed content index and
    encodes it again at a level of its own, so any frame of any level gets a patch."""
    from payload.delta import Patch, frame_entries, reference_entries, reference_sha256

    what = group.label(frame)
    new_entries = frame_entries(new_payload.index, group.name, frame.sha256)
    old_entries = reference_entries(old_payload.index, new_entries)
    if not old_entries:
        log(f"{what} holds no file of {old_path}; no delta for it")
        return None
    content = os.path.join(work, "new-content")
    with open(content, "wb") as out:
        _content(str(new_path), new_payload.data_offset, frame, out)
    reference = _old_files(str(old_path), old_payload, old_entries)
    patch_file = os.path.join(work, f"patch-{group.name}-{frame.number}")
    with open(patch_file, "wb") as out:
        made = make_patch(reference, [content], out)
    from_sha256 = reference_sha256(reference)
    del reference
    os.unlink(content)
    if made.size >= frame.csize:
        log(f"{what}: its patch ({made.size} bytes) is no smaller than the frame ({frame.csize}); no delta for it")
        return None
    record = Patch(
        group.name,
        frame.number - 1,
        old_payload.bundle_id,
        from_sha256,
        frame.sha256,
        frame.csize,
        frame.size,
        made.reference_size,
        made.window_log,
        made.memory,
    )
    return record, patch_file, made.sha256, made.size


def _open_at(path, offset):
    f = open(path, "rb")
    f.seek(offset)
    return f

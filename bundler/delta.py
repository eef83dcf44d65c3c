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
import io
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


# Publishing: `bundler push --delta-from OLD`


def _content(path, data_offset, group, out=None):
    """The decompressed content of `group` of the bundle file at `path`: into the binary file `out`, or returned
    as a bytearray. The frame is checked against its sha256 first."""
    import zstandard

    from payload.blobs import MAX_WINDOW
    from payload.errors import IntegrityError

    with open(path, "rb") as f:
        f.seek(data_offset + group.offset)
        frame = f.read(group.csize)
    if len(frame) != group.csize or hashlib.sha256(frame).hexdigest() != group.sha256:
        raise IntegrityError("%s: group %r does not match its sha256; the bundle is damaged" % (path, group.name))
    reader = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).stream_reader(io.BytesIO(frame))
    if out is None:
        buf = bytearray(group.size)
        view, pos = memoryview(buf), 0
        while pos < group.size:
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


def _old_bundle(old, client, work, arch, variant, log):
    """The path of the older bundle OLD names: a file, or a registry reference pulled into `work`."""
    from pathlib import Path

    if Path(old).is_file():
        return Path(old)
    from .pull import pull

    output = Path(work) / "older"
    log("pulling %s to make deltas from it..." % old)
    pull(old, output, client, arch=arch, variant=variant, log=lambda *a: None)
    return output


def publish(client, ref, new_path, new_payload, new_manifest, olds, level=LEVEL, log=print):
    """For each older bundle in `olds` (files or references), a patch for every group of the new bundle that
    changed, published as a delta manifest whose subject is `new_manifest`, listed in the referrers tag. Returns
    [(old version, number of patches, bytes of patches)]."""
    import tempfile

    from payload import artifact
    from payload.blobs import compress_group
    from payload.layout import open_payload
    from payload.oci.reference import sha256_digest
    from payload.oci.registry import referrers_tag
    from payload.progress import size_text

    new_index = new_payload.index
    subject = sha256_digest(new_manifest)
    done = []
    with tempfile.TemporaryDirectory(prefix="bundler-delta-") as work:
        client.upload_blob(ref, artifact.sha256_of(artifact.EMPTY), len(artifact.EMPTY),
                           lambda offset: io.BytesIO(artifact.EMPTY[offset:]))
        for n, old in enumerate(olds):
            old_dir = os.path.join(work, "old%d" % n)
            os.mkdir(old_dir)
            old_path = _old_bundle(old, client, old_dir, new_index.arch, new_index.variant, log)
            with open(old_path, "rb") as f:
                old_payload = open_payload(str(old_path), f)
            old_index = old_payload.index
            if (old_index.name, old_index.arch, old_index.variant) != (new_index.name, new_index.arch,
                                                                        new_index.variant):
                raise UsageError("--delta-from %s is %s %s/%s, not an older %s %s/%s" % (
                    old, old_index.name, old_index.arch, old_index.variant, new_index.name, new_index.arch,
                    new_index.variant))
            if old_payload.split:
                raise UsageError("--delta-from %s is a split bundle; name the executable made without --split" % old)
            have = set(g.sha256 for g in old_index.groups)
            patches = []
            for group in new_index.groups:
                if group.sha256 in have:
                    continue
                made = _patch_group(old_path, old_payload, new_path, new_payload, group, level, work, log,
                                    compress_group)
                if made is None:
                    continue
                patch, patch_file = made
                digest = "sha256:" + patch.sha256_of_file
                client.upload_blob(ref, digest, patch.patch_size, lambda offset, p=patch_file: _open_at(p, offset),
                                   label="pushing delta of " + group.name)
                patches.append((patch.record, digest, patch.patch_size))
            if not patches:
                log("%s: no group changed that a delta would carry; no delta from %s" % (new_path, old_index.version))
                continue
            manifest = artifact.delta_manifest_bytes(new_manifest, old_payload.bundle_id, new_payload.bundle_id,
                                                     patches)
            client.put_manifest(ref, artifact.sha256_of(manifest), manifest, artifact.OCI_MANIFEST)
            tag_ref = ref._replace(tag=referrers_tag(subject), digest=None)
            found = client.manifest(tag_ref)
            existing = None
            if found is not None:
                from payload.oci.reference import load_json

                existing = load_json(found[0], "referrers tag %s" % tag_ref.tag)
            client.put_manifest(ref, tag_ref.tag, artifact.with_referrer(existing, manifest), artifact.OCI_INDEX)
            total = sum(size for _, _, size in patches)
            log("%s: delta from %s %s: %d patch(es), %s, for %s" % (
                new_path, old_index.name, old_index.version, len(patches), size_text(total),
                ", ".join(p.describe() for p, _, _ in patches)))
            done.append((old_index.version, len(patches), total))
    return done


class _Made(object):
    def __init__(self, record, sha256_of_file, patch_size):
        self.record, self.sha256_of_file, self.patch_size = record, sha256_of_file, patch_size


def _patch_group(old_path, old_payload, new_path, new_payload, group, level, work, log, compress_group):
    """(_Made, patch file) for the new `group` against the old group of that name, or None (said why)."""
    from payload.delta import Patch, local_zstd

    old_index = old_payload.index
    try:
        old_group = old_index.group(group.name)
    except KeyError:
        log("group %r is new in %s; it has no older version to patch from" % (group.name, new_path))
        return None
    if any(e.kind != "file" for e in old_index.entries_of(old_group.name)):
        log("group %r holds image blobs, which a device keeps in archives, not as files; no delta" % group.name)
        return None
    content = os.path.join(work, "new-" + group.name)
    with open(content, "wb") as out:
        _content(str(new_path), new_payload.data_offset, group, out)
    again = os.path.join(work, "again-" + group.name)
    with open(again, "wb") as out:
        _, sha256, csize = compress_group([content], out, level=level)
    os.unlink(again)
    if sha256 != group.sha256 or csize != group.csize:
        log("group %r: compressed again at level %d with libzstd %s it is not the frame %s holds (made at another "
            "level? pass --delta-level); no delta" % (group.name, level, local_zstd(), new_path))
        return None
    reference = _content(str(old_path), old_payload.data_offset, old_group)
    patch_file = os.path.join(work, "patch-" + group.name)
    with open(patch_file, "wb") as out:
        made = make_patch(reference, [content], out)
    del reference
    os.unlink(content)
    if made.size >= group.csize:
        log("group %r: its patch (%d bytes) is no smaller than the group (%d); no delta" % (
            group.name, made.size, group.csize))
        return None
    record = Patch(group.name, 0, old_payload.bundle_id, old_group.sha256, group.sha256, group.csize, group.size,
                   made.reference_size, made.window_log, made.memory, level, local_zstd())
    return _Made(record, made.sha256, made.size), patch_file


def _open_at(path, offset):
    f = open(path, "rb")
    f.seek(offset)
    return f

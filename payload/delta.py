"""Deltas on the device: the new content of a frame made from a patch against the installed old version.

A patch (bundler/fleet/delta.py makes it) is one zstd frame whose decoded bytes are the new frame's content; its
reference (a raw-content prefix) is the old version of the frame's files (reference_entries: the installed
version's files at the same paths, in the new frame's order), read here from the installed files. Every decoded
entry is checked against its sha256 and size in the new signed content index as it is written; only when that
fails is the reference hashed (each file against the installed index, the whole against the sha256 the patch was
made against), to say why. The signature covers content, not encoding (docs/format.md, 3.5), so the same decoded
bytes are encoded again here, as they come, at REENCODE_LEVEL, a fast level, rather than at the publisher's: the
rebuilt executable keeps the bundle id and the signature, its encoding table records the frame with its new
sha256, size and `level`. The decoded files stay for the install to link (payload/groups.link_checked). Any
failure on the way is a DeltaUnusable: the caller says so and fetches the frame whole.

Memory: the reference is held twice for a moment (python-zstandard copies it into its dictionary; the copy read
from the files is dropped before decoding), then once with the decoder's window; decoding streams into files and
into the encoder, whose workers and jobs are counted on top. The device's bound (--bundle-delta-memory, env
BUNDLE_DELTA_MEMORY, default DEFAULT_MEMORY) is checked against that sum before the reference is read.
"""

import hashlib
import os
import sys

import zstandard

from payload import groups
from payload.errors import BundleError
from payload.sizes import parse_size, size_text

MEMORY_ENV = "BUNDLE_DELTA_MEMORY"
# What a 512 MB board can spare for an update while its runtime keeps running: containerd's release (83 MB of
# content, 166 MB to decode) fits, a patch of a group of more than ~120 MB does not and is fetched whole.
DEFAULT_MEMORY = 256 << 20
DECODER_OVERHEAD = 1 << 20  # the decoder context and its block buffers
MAX_WINDOW_LOG = 30  # libzstd's bound on 32-bit machines
# The zstd level a device encodes a patched frame at: fast enough that applying a delta costs about what fetching
# the frame whole would; the frame comes out larger than the publisher's, which only this device's disk pays.
REENCODE_LEVEL = 1
# Its window and jobs: small, so that encoding fits beside the decoder's window and reference, which it runs
# alongside (level 1 finds few matches farther back; the frame is as large within 0.1 %).
REENCODE_WINDOW_LOG = 19
REENCODE_JOB_SIZE = 4 << 20
_FRAME_HEADER_MAX = 18

# The record of a patch: annotations of its layer in the delta artifact (payload/oci/artifact.py names the types).
_PREFIX = "vnd.bundler.delta."
# from-sha256: of the reference (the old files' bytes, reference_entries); to-sha256: of the new frame.
_FIELDS = (
    ("group", str),
    ("frame", int),
    ("from-bundle", str),
    ("from-sha256", str),
    ("to-sha256", str),
    ("to-csize", int),
    ("size", int),
    ("reference-size", int),
    ("window-log", int),
    ("memory", int),
)


class DeltaUnusable(BundleError):
    """This delta cannot give the frame; the caller fetches it whole. The message says why."""


class Patch:
    """What a published patch says of itself: which frame of which installed version it starts from, which new
    frame it gives, and what applying it needs."""

    def __init__(
        self,
        group,
        frame,
        from_bundle,
        from_sha256,
        to_sha256,
        to_csize,
        size,
        reference_size,
        window_log,
        memory,
    ):
        self.group, self.frame = group, frame
        self.from_bundle, self.from_sha256 = from_bundle, from_sha256
        self.to_sha256, self.to_csize, self.size = to_sha256, to_csize, size
        self.reference_size, self.window_log, self.memory = reference_size, window_log, memory

    def to_annotations(self):
        return {_PREFIX + key: str(getattr(self, key.replace("-", "_"))) for key, _ in _FIELDS}

    @classmethod
    def from_annotations(cls, notes):
        """The patch a layer's annotations describe; DeltaUnusable when they are not a patch's."""
        values = {}
        for key, kind in _FIELDS:
            text = (notes or {}).get(_PREFIX + key)
            if not isinstance(text, str):
                raise DeltaUnusable(f"the delta's annotations have no {_PREFIX + key}")
            try:
                values[key.replace("-", "_")] = kind(text) if kind is str else int(text, 10)
            except ValueError:
                raise DeltaUnusable(f"the delta's {_PREFIX + key} is {text!r}, not a number") from None
        return cls(**values)

    def describe(self):
        return f"{self.group} ({size_text(self.size)}, to decode {size_text(self.memory)})"


def patch_window_log(reference_size, target_size):
    """The window a patch is made with: it must reach from the end of the new content back over the whole
    reference (zstd's --patch-from takes the bit length of the larger plus one)."""
    return min(MAX_WINDOW_LOG, max(10, max(reference_size, target_size).bit_length() + 1))


def decode_memory(reference_size, window_log, target_size):
    """Bytes applying a patch holds at its peak: the reference twice while its dictionary is made (then once),
    plus the decoder's window, which never exceeds the content it decodes."""
    return reference_size + max(reference_size, min(1 << window_log, target_size)) + DECODER_OVERHEAD


def reencode_threads():
    """zstd's workers for encoding a frame again: one per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def reencode_memory(size, threads=1, level=REENCODE_LEVEL):
    """Bytes encoding a frame again holds beside the decoder: the tables of each of `threads` workers, and each
    one's job in and out, plus the job being filled."""
    job = min(REENCODE_JOB_SIZE, max(size, 1))
    params = zstandard.ZstdCompressionParameters.from_level(level, source_size=size, window_log=REENCODE_WINDOW_LOG)
    return threads * (params.estimated_compression_context_size() + 2 * job) + job + DECODER_OVERHEAD


def memory_bound(environ=None, option=None):
    """The most memory a delta may take on this device: --bundle-delta-memory, else $BUNDLE_DELTA_MEMORY, else
    DEFAULT_MEMORY. 0 turns deltas off."""
    if option is not None:
        return parse_size(option, "--bundle-delta-memory")
    text = (os.environ if environ is None else environ).get(MEMORY_ENV)
    if text:
        return parse_size(text, MEMORY_ENV)
    return DEFAULT_MEMORY


def check_memory(patch, bound):
    """Refuse, before anything is read or decoded, a patch whose needs exceed `bound`: decoding, and beside it
    encoding again with one worker. The recorded need is recomputed from the sizes (a record that understates them
    is not believed). Returns the need."""
    need = _decoding_memory(patch) + reencode_memory(patch.size)
    if need > bound:
        raise DeltaUnusable(
            f"it needs {size_text(need)} of memory, more than the {size_text(bound)} this device allows "
            "(--bundle-delta-memory, "
            f"env {MEMORY_ENV})"
        )
    return need


def _decoding_memory(patch):
    return max(patch.memory, decode_memory(patch.reference_size, patch.window_log, patch.size))


def encode_workers(patch, bound, threads):
    """How many of `threads` encoding workers fit in `bound` beside the decoder (at least one: check_memory
    refused the patch otherwise)."""
    workers = max(threads, 1)
    while workers > 1 and _decoding_memory(patch) + reencode_memory(patch.size, workers) > bound:
        workers -= 1
    return workers


def frame_entries(index, group_name, frame_sha256):
    """The entries of the frame `frame_sha256` of group `group_name` of `index`, in stream order, or None."""
    for group, frame in index.frames():
        if group.name == group_name and frame.sha256 == frame_sha256:
            for candidate, entries in group.split_entries(index.entries_of(group.name)):
                if candidate is frame:
                    return entries
    return None


def reference_entries(old_index, new_entries):
    """What a patch of a frame holding `new_entries` is made against: the old index's files at the same paths,
    in the same order (image blobs excluded: a device keeps them in archives, not as files)."""
    by_path = dict((e.path, e) for e in old_index.files())
    return [by_path[e.path] for e in new_entries if e.path in by_path]


def reference_sha256(reference):
    return hashlib.sha256(reference).hexdigest()


def read_reference(version_dir, entries):
    """The old frame's content from the installed files at `version_dir`, as a bytearray. It is not hashed here:
    what the patch decodes to is checked against the signed index, and only when that fails is the reference
    hashed, to say why (why_unusable). DeltaUnusable names the first file that is missing or not its size."""
    total = sum(e.size for e in entries)
    buf = bytearray(total)
    view, pos = memoryview(buf), 0
    for entry in entries:
        if entry.kind != "file":
            raise DeltaUnusable(f"the installed version keeps its image blobs in archives, not as {entry.path}")
        path = os.path.join(version_dir, entry.path)
        try:
            with open(path, "rb") as f:
                end = pos + entry.size
                while pos < end:
                    n = f.readinto(view[pos:end])
                    if not n:
                        break
                    pos += n
                extra = f.read(1)
        except OSError as exc:
            raise DeltaUnusable(f"the installed {entry.path} cannot be read ({exc.strerror})") from None
        if pos != end or extra:
            raise DeltaUnusable(_differs(entry))
    view.release()
    return buf


def why_unusable(version_dir, entries, sha256):
    """After a patch did not give the signed content: DeltaUnusable naming the installed file that differs from
    its index, else saying the patch was made against other files (the whole is not `sha256`), else None (the
    patch itself is at fault)."""
    whole = hashlib.sha256()
    for entry in entries:
        one = hashlib.sha256()
        try:
            with open(os.path.join(version_dir, entry.path), "rb") as f:
                for chunk in iter(lambda f=f: f.read(groups.BUFFER_SIZE), b""):
                    one.update(chunk)
                    whole.update(chunk)
        except OSError as exc:
            return DeltaUnusable(f"the installed {entry.path} cannot be read ({exc.strerror})")
        if one.hexdigest() != entry.sha256:
            return DeltaUnusable(_differs(entry))
    if whole.hexdigest() != sha256:
        return DeltaUnusable("it was made against other files than this version's")
    return None


def _differs(entry):
    return f"the installed {entry.path} differs from its index (repair it with --bundle-repair)"


def _check_header(patch, data_head, bound):
    try:
        params = zstandard.get_frame_parameters(data_head)
    except zstandard.ZstdError as exc:
        raise DeltaUnusable(f"the patch is not a zstd frame ({exc})") from None
    if params.content_size != patch.size:
        raise DeltaUnusable(f"the patch decodes to {params.content_size} bytes, its record says {patch.size}")
    if params.dict_id:
        raise DeltaUnusable(f"the patch asks for dictionary {params.dict_id}, not its reference")
    if patch.reference_size + min(params.window_size, patch.size) + DECODER_OVERHEAD > bound:
        raise DeltaUnusable(
            f"the patch's window ({size_text(params.window_size)}) exceeds the memory this device allows"
        )
    return params


def decode(patch, patch_file, reference, entries, dest, out, bound, workers=1):
    """Decode the patch (a binary file) against `reference` (a bytearray, emptied here) into one file per entry
    under `dest` (with its mode, fsynced), each checked against its sha256 as it is written, and encode the same
    bytes again at REENCODE_LEVEL, with `workers` zstd workers, as one frame into the binary file `out`: the frame
    is made of exactly the bytes that were hashed. Returns (sha256, csize) of the frame; DeltaUnusable when
    anything does not hold (then `out` and the files are the caller's to remove)."""
    head = patch_file.read(_FRAME_HEADER_MAX)
    params = _check_header(patch, head, bound)
    patch_file.seek(-len(head), 1)
    if len(reference) != patch.reference_size:
        raise DeltaUnusable(
            f"the reference holds {len(reference)} bytes, the patch was made against {patch.reference_size}"
        )
    dictionary = zstandard.ZstdCompressionDict(reference, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    del reference[:]  # the dictionary holds its own copy
    dctx = zstandard.ZstdDecompressor(dict_data=dictionary, max_window_size=max(params.window_size, 1 << 10))
    frame = groups.HashingWriter(out)
    encoder = reencoder(patch.size, workers).stream_writer(frame, size=patch.size, closefd=False)
    syncer = groups.Syncer()  # each file gets its mode and is fsynced, so that an install can take it as it is
    writer = groups.EntrySplitter(entries, dest, syncer)
    writer.next_entry()
    try:
        stream = dctx.stream_reader(patch_file, read_size=groups.BUFFER_SIZE, read_across_frames=False)
        buf = bytearray(groups.BUFFER_SIZE)
        produced = 0
        while True:
            n = stream.readinto(buf)
            if not n:
                break
            produced += n
            if produced > patch.size:
                raise DeltaUnusable(f"the patch decodes to more than its {patch.size} bytes")
            piece = memoryview(buf)[:n]
            writer.feed(piece)  # never more than the entries hold: patch.size is their sum (apply checks it)
            encoder.write(piece)
        if produced != patch.size or patch_file.read(1):
            raise DeltaUnusable(f"the patch decodes to {produced} bytes, expected {patch.size}")
    except zstandard.ZstdError as exc:
        raise DeltaUnusable(f"the patch does not decode against the installed version ({exc})") from None
    finally:
        writer.close()
        failure = syncer.close()
    if writer.mismatched:
        raise DeltaUnusable(
            "the patch's result differs from the signed index in {}".format(", ".join(writer.mismatched))
        )
    if failure is not None:
        raise failure
    # Not `with` above: its __exit__ would end the frame, encoding what is buffered, while an error propagates.
    encoder.close()  # ends the frame; closefd=False leaves `out` open
    return frame.hexdigest(), frame.count


def reencoder(size, workers=1):
    """The compressor a device encodes a frame of `size` bytes again with (REENCODE_LEVEL, its window and jobs)."""
    params = zstandard.ZstdCompressionParameters.from_level(
        REENCODE_LEVEL,
        source_size=size,
        window_log=REENCODE_WINDOW_LOG,
        threads=workers,
        job_size=REENCODE_JOB_SIZE,
        write_content_size=True,
        write_checksum=False,
    )
    return zstandard.ZstdCompressor(compression_params=params)


def apply(patch, patch_path, old_dir, old_entries, new_entries, work, out_path, bound):
    """The new frame's content from the patch at `patch_path`, the installed old version at `old_dir` (its
    entries of the frame `old_entries`) and the new index's `new_entries` of the frame: decoded into files under
    `work` (a directory the caller removes), each checked against the signed index, and at once encoded again at
    REENCODE_LEVEL into `out_path`. Returns (sha256, csize) of the frame written; DeltaUnusable when the delta
    cannot give its content."""
    check_memory(patch, bound)
    if sum(e.size for e in new_entries) != patch.size:
        raise DeltaUnusable(
            f"the new frame holds {sum(e.size for e in new_entries)} bytes, the patch gives {patch.size}"
        )
    if sum(e.size for e in old_entries) != patch.reference_size:  # what was checked is what will be read
        raise DeltaUnusable(
            f"this version's files hold {sum(e.size for e in old_entries)} bytes, the patch was made against "
            f"{patch.reference_size}"
        )
    workers = encode_workers(patch, bound, reencode_threads())
    reference = read_reference(old_dir, old_entries)
    try:
        with open(patch_path, "rb") as f, open(out_path, "wb") as out:
            return decode(patch, f, reference, new_entries, work, out, bound, workers)
    except BaseException as exc:
        try:
            os.unlink(out_path)
        except OSError:
            pass
        if isinstance(exc, DeltaUnusable):
            reason = why_unusable(old_dir, old_entries, patch.from_sha256)
            if reason is not None:
                raise reason from None
        raise


def say_fallback(group, why, stream=None):
    """The one line that says a delta was not used and the frame comes whole."""
    (stream or sys.stderr).write(f"delta for group {group!r} not used: {why}; fetching the group whole\n")

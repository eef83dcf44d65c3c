"""A bundle as an OCI artifact: which blobs it is made of, the manifest that lists them, the image index that holds
one manifest per architecture under a tag, and how the one-file executable is rebuilt from the blobs byte for byte.

docs/fleet.md describes the layout; `bundler push` / `bundler pull` and the device's `--bundle-update` all go
through this module, so what is pushed is what a device reads.

    blobs = bundle_blobs(payload, f)               # config (the signed index) and layers, with their spans
    manifest = manifest_bytes(payload.index, blobs)

The blobs are the bundle's own bytes, never re-encoded:
  - config: the payload section up to its data area: header, index, signature block (docs/format.md, 2);
  - one layer per stored frame, exactly the bytes the data area holds (stored_frames());
  - the rest of the executable, the bytes outside the payload section (whose sha256 the index records as
    `stub_sha256`), as three layers: the ELF header with the bytes after the section but pydata (the section
    table: these change with the section's size, so with every index; a few KB), the bootloader (up to the
    section) and PyInstaller's archive (section pydata); the last two are the same bytes in every bundle of one
    stub. The ELF layer's annotations give where each piece goes.
Every frame's digest is in the encoding table the header binds, every entry's in the signed content index, and
the rebuilt file's stub_sha256 checks the other three.
"""

import hashlib
import json
from typing import NamedTuple, Optional

from payload import arches
from payload.errors import IntegrityError, UsageError
from payload.fs import CHUNK

ARTIFACT_TYPE = "application/vnd.bundler.bundle.v1"
INDEX_TYPE = "application/vnd.bundler.index.v1"  # the config: payload header, index, signature block
FRAME_TYPE = "application/vnd.bundler.frame.v1+zstd"  # one stored zstd frame of a group
ELF_TYPE = "application/vnd.bundler.elf.v1"  # the ELF header and what follows the payload section but pydata
STUB_TYPE = "application/vnd.bundler.stub.v1"  # the bootloader: from the ELF header's end to the payload section
ARCHIVE_TYPE = "application/vnd.bundler.pydata.v1"  # the content of the section pydata: PyInstaller's archive

# Deltas (payload/delta.py, docs/fleet.md "Deltas"): a manifest of patches whose `subject` is the new bundle's
DELTA_TYPE = "application/vnd.bundler.delta.v1"  # its artifactType
PATCH_TYPE = "application/vnd.bundler.patch.v1+zstd"  # one layer per changed frame
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"  # its config, the OCI 1.1 empty descriptor
EMPTY = b"{}"
FROM_BUNDLE = "vnd.bundler.delta.from-bundle"  # manifest annotations: the bundle ids it goes between
TO_BUNDLE = "vnd.bundler.delta.to-bundle"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

# Annotations of a bundle's manifest (and of its entry in an image index)
NAME = "vnd.bundler.name"
VERSION = "vnd.bundler.version"
VARIANT = "vnd.bundler.variant"
ARCH = "vnd.bundler.arch"
BUNDLE_ID = "vnd.bundler.bundle-id"
FILE_SHA256 = "vnd.bundler.file-sha256"  # of the whole executable, for `sha256sum -c` after a pull
OCI_TITLE = "org.opencontainers.image.title"
OCI_VERSION = "org.opencontainers.image.version"
# Annotations of layers
GROUP = "vnd.bundler.group"
FRAME = "vnd.bundler.frame"  # the frame's number in its group, from 0
SECTION_OFFSET = "vnd.bundler.section-offset"
PYDATA_OFFSET = "vnd.bundler.pydata-offset"
HEADER_SIZE = "vnd.bundler.elf-header-size"

# The most a manifest may claim for the three layers outside the payload section. The signed content index records
# their sha256 together (stub_sha256) but not their sizes, so these bounds are what keeps a registry replaying a
# genuine signed index from filling a device's disk with a huge "bootloader" before the sha256 can fail. Measured
# stubs: bootloader 70 KB, pydata 5.9 MB stripped and 23.6 MB unstripped, ELF layer about 2 KB.
MAX_OUTSIDE_LAYER = {ELF_TYPE: 1 << 20, STUB_TYPE: 16 << 20, ARCHIVE_TYPE: 64 << 20}


def stored_frames(index):
    """Every stored frame of a bundle (payload.index.Frame, which knows its group), in data-area order."""
    return sorted((frame for _, frame in index.frames()), key=lambda f: f.offset)


class Blob(NamedTuple):
    """One blob of the artifact and where its bytes lie in the bundle file: `spans` of (offset, length)."""

    media_type: str
    digest: str
    size: int
    annotations: tuple[tuple[str, str], ...]
    spans: tuple[tuple[int, int], ...]
    frame: Optional[object] = None  # payload.index.Frame, for a frame's layer

    def descriptor(self):
        doc = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc


class Blobs(NamedTuple):
    config: Blob
    elf: Blob
    stub: Blob
    archive: Blob
    frames: tuple[Blob, ...]

    @property
    def layers(self):
        return (self.elf, self.stub, self.archive) + self.frames

    @property
    def all(self):
        return (self.config,) + self.layers


def _digest(sha256):
    return "sha256:" + sha256


def bundle_blobs(payload, f=None):
    """The blobs of an opened, unsplit bundle payload and their spans in its file, open as `f`. A head read from a
    registry (read_head) has no file: its stub and archive blobs are then unknown (no digest, no size)."""
    index = payload.index
    if payload.split:
        raise UsageError(
            f"{payload.path} is a split bundle; push the executable made without --split (bundler split and "
            "bundler copy --split cut it again after a pull)"
        )
    head = head_of(payload)
    start = payload.section_offset or 0
    config = Blob(INDEX_TYPE, sha256_of(head), len(head), (), ((start, len(head)),))
    data_offset = payload.data_offset or 0
    frames = tuple(
        Blob(
            FRAME_TYPE,
            _digest(f.sha256),
            f.csize,
            ((FRAME, str(f.number - 1)), (GROUP, f.group)),
            ((data_offset + f.offset, f.csize),),
            f,
        )
        for f in stored_frames(index)
    )
    if f is None:
        unknown = [Blob(t, None, None, (), ()) for t in (ELF_TYPE, STUB_TYPE, ARCHIVE_TYPE)]
        return Blobs(config, *unknown, frames)
    elf_spans, stub_span, archive_span = outside_spans(f, payload)
    elf = Blob(
        ELF_TYPE,
        _hash_spans(f, elf_spans),
        sum(n for _, n in elf_spans),
        ((HEADER_SIZE, str(elf_spans[0][1])), (PYDATA_OFFSET, str(archive_span[0])), (SECTION_OFFSET, str(start))),
        elf_spans,
    )
    stub = Blob(STUB_TYPE, _hash_spans(f, (stub_span,)), stub_span[1], (), (stub_span,))
    archive = Blob(ARCHIVE_TYPE, _hash_spans(f, (archive_span,)), archive_span[1], (), (archive_span,))
    return Blobs(config, elf, stub, archive, frames)


def outside_spans(f, payload):
    """(the ELF layer's spans, the bootloader's span, the span of pydata) of the bundle file `f`: the bytes outside
    the payload section, cut so that what changes with the section's size (so with every index: the ELF header's
    section table offset, the section table after pydata) is apart from what does not (the bootloader, PyInstaller's
    archive, the same bytes in every bundle of one stub)."""
    from payload.elf import find_section

    f.seek(0, 2)
    size = f.tell()
    f.seek(4)
    header_size = 64 if f.read(1) == b"\x02" else 52  # ELFCLASS64 or ELFCLASS32
    section_end = payload.section_offset + payload.section_size
    found = find_section(f, "pydata")
    if found is None or found[0] < section_end or found[0] + found[1] > size or payload.section_offset < header_size:
        raise IntegrityError(f"{payload.path} has no PyInstaller archive (pydata) after its payload section")
    archive_start, archive_end = found[0], found[0] + found[1]
    elf = ((0, header_size), (section_end, archive_start - section_end), (archive_end, size - archive_end))
    return elf, (header_size, payload.section_offset - header_size), found


def _hash_spans(f, spans):
    sha = hashlib.sha256()
    for offset, length in spans:
        f.seek(offset)
        left = length
        while left:
            chunk = f.read(min(left, CHUNK))
            if not chunk:
                raise IntegrityError("the bundle file ends inside its stub")
            sha.update(chunk)
            left -= len(chunk)
    return "sha256:" + sha.hexdigest()


def head_of(payload):
    """The config blob: the payload section up to its data area, as the bundle file holds it."""
    from payload.layout import head_bytes

    return head_bytes(payload.index_bytes, payload.signature, payload.table_bytes, payload.data_size)


def annotations(index, file_sha256=None):
    doc = {
        NAME: index.name,
        VERSION: index.version,
        VARIANT: index.variant,
        ARCH: index.arch,
        BUNDLE_ID: index.bundle_id,
        OCI_TITLE: index.name,
        OCI_VERSION: index.version,
    }
    if file_sha256:
        doc[FILE_SHA256] = file_sha256
    return doc


def canonical(doc):
    """JSON bytes as every writer here writes them: the same bundle always gives the same manifest digest."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def manifest_bytes(index, blobs, file_sha256=None):
    return canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": blobs.config.descriptor(),
            "layers": [b.descriptor() for b in blobs.layers],
            "annotations": annotations(index, file_sha256),
        }
    )


# Reading an artifact back


class Artifact(NamedTuple):
    """A bundle's manifest as read from a registry, checked against its config (the signed index)."""

    payload: object  # payload.layout.Payload of the config: index, signature; no data area
    blobs: Blobs  # the stub blob's size from the manifest
    section_offset: int
    file_sha256: Optional[str]

    @property
    def file_size(self):
        return self.blobs.elf.size + self.blobs.stub.size + self.blobs.archive.size + self.payload.section_size


def parse_manifest(data, where):
    """(manifest document, config descriptor) of a bundle's manifest; IntegrityError for anything else."""
    from payload.oci.reference import descriptor_from, load_json

    doc = load_json(data, where)
    if doc.get("artifactType") != ARTIFACT_TYPE or not isinstance(doc.get("layers"), list):
        raise not_a_bundle(where, doc.get("artifactType") or doc.get("mediaType") or "no media type")
    config = descriptor_from(doc.get("config"), where + " config")
    if config.media_type != INDEX_TYPE:
        raise IntegrityError(f"{where} has a config of type {config.media_type!r}, expected {INDEX_TYPE}")
    return doc, config


def not_a_bundle(where, what):
    """A reference to something other than a bundle (a container image, most likely) is a mistake of the user's."""
    return UsageError(
        f"{where} is not a bundle but {what} (a container image?); name a tag that `bundler push` wrote, e.g. "
        "REGISTRY/REPO:TAG of your bundle"
    )


def read_artifact(where, manifest_doc, config_bytes):
    """Check that the manifest lists exactly the frames its config (the signed index) calls for, after the stub and
    the archive (whose digests only the manifest gives: the rebuilt file's stub_sha256 checks them)."""
    from payload.layout import read_head
    from payload.oci.reference import descriptor_from

    payload = read_head(where, config_bytes)
    layers = manifest_doc["layers"]
    expected = bundle_blobs(payload)
    if len(layers) != len(expected.layers):
        raise IntegrityError(
            f"{where} lists {len(layers)} layers, its index calls for {len(expected.layers)}; the manifest does not "
            "belong to its index"
        )
    found = [descriptor_from(layer, f"{where} layer {n}") for n, layer in enumerate(layers)]
    for n, (layer, blob) in enumerate(zip(found, expected.layers)):
        if (
            layer.media_type != blob.media_type
            or (blob.digest is not None and layer.digest != blob.digest)
            or (blob.size is not None and layer.size != blob.size)
        ):
            raise IntegrityError(
                f"{where} layer {n} is {layer.media_type} {layer.digest}, its index calls for {blob.media_type} "
                f"{blob.digest}; the manifest does not belong to its index"
            )
    for n, layer in enumerate(found[:3]):
        bound = MAX_OUTSIDE_LAYER[layer.media_type]
        if layer.size > bound:
            raise IntegrityError(
                f"{where} layer {n} ({layer.media_type}) claims {layer.size} bytes, more than the {bound} a stub's "
                "may have; the manifest does not belong to a bundle, check the registry"
            )
    notes = layers[0].get("annotations") or {}
    try:
        header_size, section_offset, archive_offset = (
            int(notes[k]) for k in (HEADER_SIZE, SECTION_OFFSET, PYDATA_OFFSET)
        )
    except (KeyError, ValueError, TypeError):
        raise IntegrityError(
            f"{where}: the ELF layer lacks its {HEADER_SIZE}, {SECTION_OFFSET} or {PYDATA_OFFSET} annotation"
        ) from None
    elf, stub, archive = found[0], found[1], found[2]
    gap = archive_offset - section_offset - payload.section_size  # between the section and pydata
    if (
        header_size not in (52, 64)
        or section_offset != header_size + stub.size
        or not 0 <= gap <= elf.size - header_size
    ):
        raise IntegrityError(f"{where}: the ELF layer's offsets do not fit its layers")
    blobs = expected._replace(
        elf=Blob(
            ELF_TYPE,
            elf.digest,
            elf.size,
            (),
            ((0, header_size), (header_size, gap), (header_size + gap, elf.size - header_size - gap)),
        ),
        stub=Blob(STUB_TYPE, stub.digest, stub.size, (), ((0, stub.size),)),
        archive=Blob(ARCHIVE_TYPE, archive.digest, archive.size, (), ((0, archive.size),)),
    )
    file_sha256 = (manifest_doc.get("annotations") or {}).get(FILE_SHA256)
    return Artifact(payload, blobs, section_offset, file_sha256)


def rebuild(out, artifact, open_blob, write_section=None):
    """Write the executable into the binary file `out` from its blobs, each hashed on the way against its digest:
    `open_blob(blob)` gives a readable file of that blob's bytes. The result still has to pass verify_rebuilt().
    `write_section(out)`, when given, writes the payload section in place of the head and frames."""
    blobs = artifact.blobs
    (_, header), (_, gap), (_, tail) = blobs.elf.spans
    with open_blob(blobs.elf) as elf:
        elf_sha = hashlib.sha256()
        _copy(elf, out, header, elf_sha, "the ELF header")
        for blob in (blobs.stub,):
            with open_blob(blob) as stub:
                _check(_copy(stub, out, blob.size, hashlib.sha256(), "the stub"), blob, "the stub")
        if write_section is None:
            _write_section(out, artifact, open_blob)
        else:
            write_section(out)
        _copy(elf, out, gap, elf_sha, "the ELF layer")
        with open_blob(blobs.archive) as archive:
            _check(_copy(archive, out, blobs.archive.size, hashlib.sha256(), "pydata"), blobs.archive, "pydata")
        _check(_copy(elf, out, tail, elf_sha, "the ELF layer"), blobs.elf, "the ELF layer")


def _write_section(out, artifact, open_blob):
    """The payload section: the head, then every frame, each hashed against its digest."""
    out.write(head_of(artifact.payload))
    for blob in artifact.blobs.frames:
        with open_blob(blob) as frame:
            what = f"frame {blob.frame.number - 1} of group {blob.frame.group!r}"
            _check(_copy(frame, out, blob.size, hashlib.sha256(), what), blob, what)


def reencoded(artifact, frames):
    """The artifact as a device rebuilds it with some frames encoded again (a delta update, payload/delta.py):
    `frames` maps a published frame digest to (sha256, csize, level) of the frame encoded here. The content index
    and the signature are the published bytes (so the bundle id and the signature); the encoding table is new, with
    those frames, their `level` and the frames after them moved. The stub's blobs are the published ones."""
    from payload.index import Frame, Group
    from payload.layout import Payload

    published = artifact.payload
    index = published.index
    groups, offset = [], 0
    for group in index.groups:
        moved = []
        for f in group.frames:
            sha256, csize, level = frames.get(_digest(f.sha256), (f.sha256, f.csize, f.level))
            moved.append(Frame(offset, csize, f.size, sha256, f.count, level=level))
            offset += csize
        groups.append(Group(group.name, moved))
    table = index.with_groups(groups)
    payload = Payload(
        published.path,
        table,
        published.index_bytes,
        published.signature,
        None,
        table.payload_size,
        (published.section_offset, None),
        table.table_bytes(),
    )
    payload.section_size = len(head_of(payload)) + payload.data_size
    blobs = artifact.blobs._replace(frames=bundle_blobs(payload).frames)
    return artifact._replace(payload=payload, blobs=blobs, file_sha256=None)


def rebuild_reencoded(path, published, artifact, open_blob, scratch):
    """Write the executable at `path` for `artifact` (reencoded()), whose payload section differs in size from the
    published one: the published file with its section left as a hole is written first (every stub blob checked
    against its digest), then payload/elf.py puts the new section in, moving what follows and fixing the section
    table, as `bundler repack` does. `scratch`: a directory for the two files, removed by the caller."""
    import os

    from payload.elf import insert_section
    from payload.layout import SECTION

    holed, section = os.path.join(scratch, "published"), os.path.join(scratch, "section")
    size = published.payload.section_size
    with open(holed, "wb") as out:
        rebuild(out, published, open_blob, write_section=lambda f: f.seek(size, 1))
    with open(section, "wb") as out:
        _write_section(out, artifact, open_blob)
    insert_section(holed, path, SECTION, section, replace=True)


def _copy(src, out, size, sha, what):
    left = size
    while left:
        chunk = src.read(min(left, CHUNK))
        if not chunk:
            raise IntegrityError(f"the blob of {what} ends {left} bytes early")
        sha.update(chunk)
        out.write(chunk)
        left -= len(chunk)
    return sha


def _check(sha, blob, what):
    if "sha256:" + sha.hexdigest() != blob.digest:
        raise IntegrityError(f"the blob of {what} is sha256:{sha.hexdigest()}, expected {blob.digest}")


def verify_rebuilt(path, artifact):
    """Open the rebuilt executable as a device would: its payload where the stub's ELF table says, the same
    content index and encoding table, and the bytes outside the section matching the index (stub_sha256: the ELF
    header, the bootloader, PyInstaller's archive). Returns the opened Payload."""
    from payload.layout import open_payload
    from payload.outside import check_outside

    with open(path, "rb") as f:
        rebuilt = open_payload(path, f)
        if (
            rebuilt.index_bytes != artifact.payload.index_bytes
            or rebuilt.table_bytes != artifact.payload.table_bytes
            or rebuilt.section_offset != artifact.section_offset
        ):
            raise IntegrityError(
                f"{path}: the rebuilt executable does not hold its index where the manifest says; the "
                "artifact is damaged"
            )
        check_outside(rebuilt, f)
    return rebuilt


# Several architectures under one tag


def platform_of_arch(arch):
    """The OCI platform of an index entry, from the one architecture table (docs/format.md, 7)."""
    known = arches.get(arch)
    if known is None:
        return {}
    os_name, architecture, *variant = known.platform.split("/")
    doc = {"os": os_name, "architecture": architecture}
    if variant:
        doc["variant"] = variant[0]
    return doc


def index_entry(index, manifest, file_sha256=None):
    """The image-index entry of one bundle's manifest."""
    from payload.oci.reference import sha256_digest

    return {
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "digest": sha256_digest(manifest),
        "size": len(manifest),
        "platform": platform_of_arch(index.arch),
        "annotations": annotations(index, file_sha256),
    }


def _key(entry):
    notes = entry.get("annotations") or {}
    return notes.get(ARCH), notes.get(VARIANT)


def _describe(entry):
    notes = entry.get("annotations") or {}
    return f"{notes.get(NAME)} {notes.get(VERSION)} {notes.get(ARCH)}/{notes.get(VARIANT)}"


def merge_index(existing, entries, where):
    """The image index for a tag: `entries` (one per bundle pushed now, one version of one name) and those of
    `existing` (a tag's image index, or None) for the same name and version on other architectures or variants.
    Returns (index bytes, descriptions of the entries left out: another version)."""
    names = {(e["annotations"][NAME], e["annotations"][VERSION]) for e in entries}
    if len(names) != 1:
        raise UsageError(
            "one tag holds one version of one bundle; these are {}".format(
                ", ".join(sorted("{} {}".format(*n) for n in names))
            )
        )
    ((name, version),) = names
    keys = [_key(e) for e in entries]
    if len(set(keys)) != len(keys):
        raise UsageError("two of these bundles are the same architecture and variant; push one of them")
    kept, dropped = [], []
    for entry in (existing or {}).get("manifests") or []:
        notes = entry.get("annotations") or {} if isinstance(entry, dict) else {}
        if notes.get(NAME) != name:
            raise UsageError(
                "{} holds {}, not a version of {}; push to another repository or tag".format(
                    where, notes.get(NAME) or "something that is not a bundle", name
                )
            )
        if notes.get(VERSION) == version:
            if _key(entry) in keys:
                continue  # the same bundle (or a rebuild of it), pushed again
            kept.append(entry)
        else:
            dropped.append(_describe(entry))
    manifests = sorted(
        kept + list(entries),
        key=lambda e: (arches.NAMES.index(_key(e)[0]) if _key(e)[0] in arches.NAMES else 99, str(_key(e)[1])),
    )
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": ARTIFACT_TYPE,
        "manifests": manifests,
        "annotations": {NAME: name, VERSION: version, OCI_TITLE: name, OCI_VERSION: version},
    }
    return canonical(doc), dropped


def select_entry(index_doc, arch, variant, where):
    """The manifest entry of an image index for `arch` and `variant` (None: any; then only one may match)."""
    entries = [e for e in index_doc.get("manifests") or [] if isinstance(e, dict)]
    found = [e for e in entries if (arch is None or _key(e)[0] == arch) and (variant is None or _key(e)[1] == variant)]
    if len(found) == 1:
        return found[0]
    have = ", ".join(sorted("{}/{}".format(*_key(e)) for e in entries)) or "nothing"
    wanted = "/".join(p for p in (arch, variant) if p) or "any architecture"
    if not found:
        raise UsageError(f"{where} has no bundle for {wanted}; it has: {have}")
    raise UsageError(
        "{} has several bundles for {} ({}); name the {}".format(
            where, wanted, have, "variant" if arch else "architecture (--arch)"
        )
    )


# Bytes of blobs: spans of a bundle file, and blobs fetched into a download directory


class SpanReader:
    """The concatenated `spans` ((offset, length), ...) of the file at `path` as one readable file, from `start`."""

    def __init__(self, path, spans, start=0):
        self.handle = open(path, "rb")
        self.spans = [s for s in spans if s[1]]
        self.position = 0
        self._seek(start)

    def _seek(self, start):
        skipped = 0
        while self.spans and skipped + self.spans[0][1] <= start:
            skipped += self.spans.pop(0)[1]
        if self.spans:
            offset, length = self.spans[0]
            self.spans[0] = (offset + start - skipped, length - (start - skipped))

    def read(self, size=-1):
        out = []
        while self.spans and size != 0:
            offset, length = self.spans[0]
            take = length if size < 0 else min(size, length)
            self.handle.seek(offset)
            data = self.handle.read(take)
            if len(data) != take:
                raise IntegrityError(f"{self.handle.name} ends inside a blob; the file is truncated")
            out.append(data)
            self.spans[0] = (offset + take, length - take)
            if not self.spans[0][1]:
                self.spans.pop(0)
            if size > 0:
                size -= take
        return b"".join(out)

    def close(self):
        self.handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def file_matches(path, digest):
    """Whether the file at `path` exists and hashes to `digest` (a blob kept from an earlier run is re-checked)."""
    return spans_match(path, None, digest)


def spans_match(path, spans, digest):
    """Whether the spans of the file at `path` (None: the whole file) hash to `digest`; False when it cannot be
    read whole."""
    from payload.oci.reference import digest_hasher

    hasher = digest_hasher(digest)
    try:
        with open(path, "rb") if spans is None else SpanReader(path, spans) as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                hasher.update(chunk)
    except (OSError, IntegrityError):
        return False
    return hasher.name + ":" + hasher.hexdigest() == digest


def fetch_blob_into(client, ref, blob, directory):
    """The path of `blob` in `directory`: kept from an earlier run when it still verifies, else fetched (resumed
    from its .partial file when one is there). Returns (path, bytes fetched now)."""
    import os

    from payload.fs import safe_unlink

    path = os.path.join(directory, blob.digest.split(":", 1)[1])
    if os.path.exists(path):
        if file_matches(path, blob.digest):
            return path, 0
        safe_unlink(path)
    before = _size(path + ".partial")
    client.fetch_blob(ref, blob.digest, path, blob.size)
    return path, blob.size - before


def _size(path):
    import os

    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def resolve(client, ref, arch, variant):
    """(the manifest's reference by digest, Artifact) for `ref` (a tag or digest of an image index or of one
    bundle's manifest), picking `arch` / `variant` from an index. Only the manifests and the config are fetched."""
    from payload.errors import NetworkError
    from payload.layout import MAX_HEAD
    from payload.oci.reference import load_json, parse_reference

    ref = parse_reference(ref) if isinstance(ref, str) else ref
    found = client.manifest(ref)
    if found is None:
        raise NetworkError(f"{ref}: not found on registry {ref.registry}; check the repository and tag")
    data, media_type, digest = found
    if media_type == OCI_INDEX:
        doc = load_json(data, f"image index of {ref}")
        if not any(_key(e)[0] for e in doc.get("manifests") or [] if isinstance(e, dict)):
            raise not_a_bundle(str(ref), "an image index without bundles")
        entry = select_entry(doc, arch, variant, str(ref))
        digest = entry.get("digest")
        data = client.fetch_manifest(ref.with_digest(digest))
    where = f"{ref.name}@{digest}"
    pinned = ref.with_digest(digest)
    manifest_doc, config = parse_manifest(data, where)
    notes = manifest_doc.get("annotations") or {}
    for key, wanted in ((ARCH, arch), (VARIANT, variant)):
        if wanted is not None and notes.get(key) != wanted:
            raise UsageError(
                "{} is a bundle for {} {}, not {}".format(where, key.rsplit(".", 1)[1], notes.get(key), wanted)
            )
    config_bytes = client.fetch_blob_bytes(pinned, config.digest, config.size, limit=MAX_HEAD)
    art = read_artifact(where, manifest_doc, config_bytes)
    for key, wanted in ((ARCH, arch), (VARIANT, variant)):
        actual = getattr(art.payload.index, key.rsplit(".", 1)[1])
        if wanted is not None and actual != wanted:
            raise IntegrityError(
                "{}: its index is for {} {}, not {}".format(where, key.rsplit(".", 1)[1], actual, wanted)
            )
    return pinned, art


def sha256_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# Deltas: patches from an older bundle to this one, found through the referrers API or its tag fallback


def delta_manifest_bytes(subject, from_bundle, to_bundle, patches):
    """The manifest of the patches from bundle `from_bundle` to `to_bundle`, whose manifest is `subject` (bytes);
    `patches` are (payload.delta.Patch, digest, size) of each patch layer."""
    from payload.oci.reference import sha256_digest

    return canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": DELTA_TYPE,
            "config": empty_descriptor(),
            "layers": [
                {"mediaType": PATCH_TYPE, "digest": digest, "size": size, "annotations": patch.to_annotations()}
                for patch, digest, size in patches
            ],
            "subject": {"mediaType": OCI_MANIFEST, "digest": sha256_digest(subject), "size": len(subject)},
            "annotations": {FROM_BUNDLE: from_bundle, TO_BUNDLE: to_bundle},
        }
    )


def empty_descriptor():
    """The config of a manifest that has none of its own (image-spec 1.1: the empty descriptor, blob `{}`)."""
    return {"mediaType": EMPTY_TYPE, "digest": sha256_of(EMPTY), "size": len(EMPTY)}


def with_referrer(existing, manifest, same):
    """The referrers tag's image index `existing` (a document, or None) with the manifest `manifest` listed once:
    an entry of the same artifactType whose annotations named in `same` are equal (an earlier push of it: a delta
    from the same bundle, the bundle's SBOM) is replaced."""
    from payload.oci.reference import load_json, sha256_digest

    doc = load_json(manifest, "referrer manifest")
    notes = doc.get("annotations") or {}
    entry = {
        "mediaType": OCI_MANIFEST,
        "artifactType": doc.get("artifactType"),
        "digest": sha256_digest(manifest),
        "size": len(manifest),
        "annotations": notes,
    }
    kept = [
        e
        for e in (existing or {}).get("manifests") or []
        if isinstance(e, dict)
        and not (
            e.get("artifactType") == entry["artifactType"]
            and all((e.get("annotations") or {}).get(key) == notes.get(key) for key in same)
        )
    ]
    return canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": kept + [entry]})


def delta_entry(referrers, from_bundle):
    """The entry of the delta from `from_bundle` in a referrers image index (a document), or None."""
    for entry in (referrers or {}).get("manifests") or []:
        if (
            isinstance(entry, dict)
            and entry.get("artifactType") == DELTA_TYPE
            and (entry.get("annotations") or {}).get(FROM_BUNDLE) == from_bundle
        ):
            return entry
    return None


def published_patches(client, pinned, from_bundle):
    """[(Patch, layer Descriptor)] of the delta from `from_bundle` published beside the bundle manifest `pinned`
    (found among its referrers), [] when there is none."""
    entry = delta_entry(client.referrers(pinned, pinned.digest), from_bundle)
    if entry is None:
        return []
    data = client.fetch_manifest(pinned.with_digest(entry.get("digest")))
    return read_delta_manifest(data, "delta manifest {}".format(entry.get("digest")), pinned.digest, from_bundle)


def read_delta_manifest(data, where, subject_digest, from_bundle):
    """[(payload.delta.Patch, layer Descriptor)] of a delta manifest, checked to go from `from_bundle` to the
    bundle whose manifest is `subject_digest`. A patch's record is only a claim: what it gives is verified."""
    from payload.delta import Patch
    from payload.oci.reference import descriptor_from, load_json

    doc = load_json(data, where)
    notes = doc.get("annotations") or {}
    subject = doc.get("subject") or {}
    if (
        doc.get("artifactType") != DELTA_TYPE
        or subject.get("digest") != subject_digest
        or notes.get(FROM_BUNDLE) != from_bundle
    ):
        raise IntegrityError(f"{where} is not the delta from {from_bundle[:12]} to {subject_digest}")
    found = []
    for n, layer in enumerate(doc.get("layers") or []):
        descriptor = descriptor_from(layer, f"{where} layer {n}")
        if descriptor.media_type == PATCH_TYPE:
            found.append((Patch.from_annotations(layer.get("annotations")), descriptor))
    return found

"""A bundle as an OCI artifact: which blobs it is made of, the manifest that lists them, the image index that holds
one manifest per architecture under a tag, and how the one-file executable is rebuilt from the blobs byte for byte.

docs/fleet.md describes the layout; `bundler push` / `bundler pull` and the device's `--bundle-update` all go
through this module, so what is pushed is what a device reads.

    blobs = bundle_blobs(payload, file_size)       # config (the signed index) and layers, with their spans
    manifest = manifest_bytes(payload.index, blobs)

The blobs are the bundle's own bytes, never re-encoded:
  - config: the payload section up to its data area: header, index, signature block (docs/format.md, 2);
  - one layer per stored frame, exactly the bytes the data area holds (stored_frames());
  - one layer for the rest of the executable: the bytes outside the payload section (bootloader, ELF headers,
    PyInstaller's archive), whose sha256 the index records as `outside_sha256`. Its annotation gives the offset
    where the section goes back in.
So every layer's digest is in the signed index: a manifest is checked against what its config calls for.
"""

import hashlib
import json
from typing import NamedTuple, Optional, Tuple

from . import arches
from .errors import IntegrityError, UsageError

ARTIFACT_TYPE = "application/vnd.bundler.bundle.v1"
INDEX_TYPE = "application/vnd.bundler.index.v1"  # the config: payload header, index, signature block
FRAME_TYPE = "application/vnd.bundler.frame.v1+zstd"  # one stored zstd frame of a group
STUB_TYPE = "application/vnd.bundler.stub.v1"  # the executable's bytes outside the payload section

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


class Frame(NamedTuple):
    """One zstd frame as the data area stores it: `offset` from the start of the data area."""

    group: str
    number: int
    offset: int
    csize: int
    sha256: str


def stored_frames(index):
    """Every stored frame of a bundle, in data-area order. Format 2: a group is one frame."""
    frames = []
    for group in index.groups:
        listed = getattr(group, "frames", None)
        if listed:  # a format that stores a group as several frames
            for number, frame in enumerate(listed):
                frames.append(Frame(group.name, number, frame.offset, frame.csize, frame.sha256))
        else:
            frames.append(Frame(group.name, 0, group.offset, group.csize, group.sha256))
    return sorted(frames, key=lambda f: f.offset)


class Blob(NamedTuple):
    """One blob of the artifact and where its bytes lie in the bundle file: `spans` of (offset, length)."""

    media_type: str
    digest: str
    size: int
    annotations: Tuple[Tuple[str, str], ...]
    spans: Tuple[Tuple[int, int], ...]
    frame: Optional[Frame] = None

    def descriptor(self):
        doc = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc


class Blobs(NamedTuple):
    config: Blob
    stub: Blob
    frames: Tuple[Blob, ...]

    @property
    def layers(self):
        return (self.stub,) + self.frames

    @property
    def all(self):
        return (self.config,) + self.layers


def _digest(sha256):
    return "sha256:" + sha256


def bundle_blobs(payload, file_size=None):
    """The blobs of an opened, unsplit bundle payload and their spans in its file of `file_size` bytes. A head read
    from a registry (read_head) has no file: its spans mean nothing, and the stub's size is unknown (None)."""
    index = payload.index
    if payload.split:
        raise UsageError("%s is a split bundle; push the executable made without --split (bundler split and "
                         "bundler copy --split cut it again after a pull)" % payload.path)
    if index.outside_sha256 is None:
        raise UsageError("%s records no sha256 of its stub (a bundle of an older bundler); make it again" % payload.path)
    head = head_of(payload)
    start = payload.section_offset or 0
    config = Blob(INDEX_TYPE, _digest(hashlib.sha256(head).hexdigest()), len(head), (), ((start, len(head)),))
    section_end = start + payload.section_size
    stub_size = None if file_size is None else file_size - payload.section_size
    stub = Blob(STUB_TYPE, _digest(index.outside_sha256), stub_size, ((SECTION_OFFSET, str(start)),),
                ((0, start), (section_end, (file_size or section_end) - section_end)))
    data_offset = payload.data_offset or 0
    frames = tuple(
        Blob(FRAME_TYPE, _digest(f.sha256), f.csize, ((FRAME, str(f.number)), (GROUP, f.group)),
             ((data_offset + f.offset, f.csize),), f)
        for f in stored_frames(index))
    return Blobs(config, stub, frames)


def head_of(payload):
    """The config blob: the payload section up to its data area, as the bundle file holds it."""
    from .layout import head_bytes

    return head_bytes(payload.index_bytes, payload.signature, payload.data_size)


def annotations(index, file_sha256=None):
    doc = {NAME: index.name, VERSION: index.version, VARIANT: index.variant, ARCH: index.arch,
           BUNDLE_ID: index.bundle_id, OCI_TITLE: index.name, OCI_VERSION: index.version}
    if file_sha256:
        doc[FILE_SHA256] = file_sha256
    return doc


def canonical(doc):
    """JSON bytes as every writer here writes them: the same bundle always gives the same manifest digest."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def manifest_bytes(index, blobs, file_sha256=None):
    return canonical({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": blobs.config.descriptor(),
        "layers": [b.descriptor() for b in blobs.layers],
        "annotations": annotations(index, file_sha256),
    })


# Reading an artifact back


class Artifact(NamedTuple):
    """A bundle's manifest as read from a registry, checked against its config (the signed index)."""

    payload: object  # payload.layout.Payload of the config: index, signature; no data area
    blobs: Blobs  # the stub blob's size from the manifest
    section_offset: int
    file_sha256: Optional[str]

    @property
    def file_size(self):
        return self.blobs.stub.size + self.payload.section_size


def parse_manifest(data, where):
    """(manifest document, config descriptor) of a bundle's manifest; IntegrityError for anything else."""
    from .oci.reference import descriptor_from, load_json

    doc = load_json(data, where)
    if doc.get("artifactType") != ARTIFACT_TYPE or not isinstance(doc.get("layers"), list):
        raise IntegrityError("%s is not a bundle (artifactType %r, expected %s); check the reference"
                             % (where, doc.get("artifactType"), ARTIFACT_TYPE))
    config = descriptor_from(doc.get("config"), where + " config")
    if config.media_type != INDEX_TYPE:
        raise IntegrityError("%s has a config of type %r, expected %s" % (where, config.media_type, INDEX_TYPE))
    return doc, config


def read_artifact(where, manifest_doc, config_bytes):
    """Check that the manifest lists exactly the layers the config (its signed index) calls for."""
    from .layout import read_head
    from .oci.reference import descriptor_from

    payload = read_head(where, config_bytes)
    layers = manifest_doc["layers"]
    expected = bundle_blobs(payload)
    if len(layers) != len(expected.layers):
        raise IntegrityError("%s lists %d layers, its index calls for %d; the manifest does not belong to its index"
                             % (where, len(layers), len(expected.layers)))
    for n, (layer, blob) in enumerate(zip(layers, expected.layers)):
        found = descriptor_from(layer, "%s layer %d" % (where, n))
        if found.media_type != blob.media_type or found.digest != blob.digest or (
                blob.size is not None and found.size != blob.size):
            raise IntegrityError("%s layer %d is %s %s, its index calls for %s %s; the manifest does not belong to "
                                 "its index" % (where, n, found.media_type, found.digest, blob.media_type, blob.digest))
    stub_doc = layers[0]
    try:
        section_offset = int((stub_doc.get("annotations") or {})[SECTION_OFFSET])
    except (KeyError, ValueError, TypeError):
        raise IntegrityError("%s: the stub layer has no %s annotation" % (where, SECTION_OFFSET)) from None
    stub_size = descriptor_from(stub_doc, where + " stub layer").size
    if not 0 < section_offset <= stub_size:
        raise IntegrityError("%s: section offset %d lies outside the %d-byte stub" % (where, section_offset, stub_size))
    stub = expected.stub._replace(size=stub_size, spans=((0, section_offset), (section_offset, stub_size - section_offset)))
    file_sha256 = (manifest_doc.get("annotations") or {}).get(FILE_SHA256)
    return Artifact(payload, expected._replace(stub=stub), section_offset, file_sha256)


def rebuild(out, artifact, open_blob):
    """Write the executable into the binary file `out` from its blobs: `open_blob(blob)` gives a readable file of
    that blob's bytes (verified by whoever fetched it). The result still has to pass verify_rebuilt()."""
    import shutil

    with open_blob(artifact.blobs.stub) as stub:
        _copy_exactly(stub, out, artifact.section_offset, "stub")
        out.write(head_of(artifact.payload))
        for blob in artifact.blobs.frames:
            with open_blob(blob) as frame:
                _copy_exactly(frame, out, blob.size, "frame %s/%d" % (blob.frame.group, blob.frame.number))
        shutil.copyfileobj(stub, out, 1 << 20)


def _copy_exactly(src, out, size, what):
    left = size
    while left:
        chunk = src.read(min(left, 1 << 20))
        if not chunk:
            raise IntegrityError("the %s blob ends %d bytes early" % (what, left))
        out.write(chunk)
        left -= len(chunk)


def verify_rebuilt(path, artifact):
    """Open the rebuilt executable as a device would: its payload where the stub's ELF table says, the same
    index, and the bytes outside the section matching the index. Returns the opened Payload."""
    from .layout import open_payload
    from .outside import check_outside

    with open(path, "rb") as f:
        rebuilt = open_payload(path, f)
        if rebuilt.index_bytes != artifact.payload.index_bytes or rebuilt.section_offset != artifact.section_offset:
            raise IntegrityError("%s: the rebuilt executable does not hold its index where the manifest says; the "
                                 "artifact is damaged" % path)
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
    from .oci.reference import sha256_digest

    return {"mediaType": OCI_MANIFEST, "artifactType": ARTIFACT_TYPE, "digest": sha256_digest(manifest),
            "size": len(manifest), "platform": platform_of_arch(index.arch),
            "annotations": annotations(index, file_sha256)}


def _key(entry):
    notes = entry.get("annotations") or {}
    return notes.get(ARCH), notes.get(VARIANT)


def _describe(entry):
    notes = entry.get("annotations") or {}
    return "%s %s %s/%s" % (notes.get(NAME), notes.get(VERSION), notes.get(ARCH), notes.get(VARIANT))


def merge_index(existing, entries, where):
    """The image index for a tag: `entries` (one per bundle pushed now, one version of one name) and those of
    `existing` (a tag's image index, or None) for the same name and version on other architectures or variants.
    Returns (index bytes, descriptions of the entries left out: another version)."""
    names = {(e["annotations"][NAME], e["annotations"][VERSION]) for e in entries}
    if len(names) != 1:
        raise UsageError("one tag holds one version of one bundle; these are %s"
                         % ", ".join(sorted("%s %s" % n for n in names)))
    (name, version), = names
    keys = [_key(e) for e in entries]
    if len(set(keys)) != len(keys):
        raise UsageError("two of these bundles are the same architecture and variant; push one of them")
    kept, dropped = [], []
    for entry in (existing or {}).get("manifests") or []:
        notes = entry.get("annotations") or {} if isinstance(entry, dict) else {}
        if notes.get(NAME) != name:
            raise UsageError("%s holds %s, not a version of %s; push to another repository or tag"
                             % (where, notes.get(NAME) or "something that is not a bundle", name))
        if notes.get(VERSION) == version:
            if _key(entry) in keys:
                continue  # the same bundle (or a rebuild of it), pushed again
            kept.append(entry)
        else:
            dropped.append(_describe(entry))
    manifests = sorted(kept + list(entries), key=lambda e: (arches.NAMES.index(_key(e)[0])
                                                             if _key(e)[0] in arches.NAMES else 99, str(_key(e)[1])))
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": ARTIFACT_TYPE, "manifests": manifests,
           "annotations": {NAME: name, VERSION: version, OCI_TITLE: name, OCI_VERSION: version}}
    return canonical(doc), dropped


def select_entry(index_doc, arch, variant, where):
    """The manifest entry of an image index for `arch` and `variant` (None: any; then only one may match)."""
    entries = [e for e in index_doc.get("manifests") or [] if isinstance(e, dict)]
    found = [e for e in entries if (arch is None or _key(e)[0] == arch) and (variant is None or _key(e)[1] == variant)]
    if len(found) == 1:
        return found[0]
    have = ", ".join(sorted("%s/%s" % _key(e) for e in entries)) or "nothing"
    wanted = "/".join(p for p in (arch, variant) if p) or "any architecture"
    if not found:
        raise UsageError("%s has no bundle for %s; it has: %s" % (where, wanted, have))
    raise UsageError("%s has several bundles for %s (%s); name the %s" % (
        where, wanted, have, "variant" if arch else "architecture (--arch)"))


# Bytes of blobs: spans of a bundle file, and blobs fetched into a download directory


class SpanReader(object):
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
                raise IntegrityError("%s ends inside a blob; the file is truncated" % self.handle.name)
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
    from .oci.reference import digest_hasher

    hasher = digest_hasher(digest)
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                hasher.update(chunk)
    except OSError:
        return False
    return hasher.name + ":" + hasher.hexdigest() == digest


def fetch_blob_into(client, ref, blob, directory):
    """The path of `blob` in `directory`: kept from an earlier run when it still verifies, else fetched (resumed
    from its .partial file when one is there). Returns (path, bytes fetched now)."""
    import os

    from .fs import safe_unlink

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
    from .errors import NetworkError
    from .oci.reference import load_json, parse_reference
    from .layout import MAX_INDEX, MAX_SIGNATURE

    ref = parse_reference(ref) if isinstance(ref, str) else ref
    found = client.manifest(ref)
    if found is None:
        raise NetworkError("%s: not found on registry %s; check the repository and tag" % (ref, ref.registry))
    data, media_type, digest = found
    if media_type == OCI_INDEX:
        entry = select_entry(load_json(data, "image index of %s" % (ref,)), arch, variant, str(ref))
        digest = entry.get("digest")
        data = client.fetch_manifest(ref.with_digest(digest))
    where = "%s@%s" % (ref.name, digest)
    pinned = ref.with_digest(digest)
    manifest_doc, config = parse_manifest(data, where)
    notes = manifest_doc.get("annotations") or {}
    for key, wanted in ((ARCH, arch), (VARIANT, variant)):
        if wanted is not None and notes.get(key) != wanted:
            raise UsageError("%s is a bundle for %s %s, not %s" % (where, key.rsplit(".", 1)[1], notes.get(key), wanted))
    config_bytes = client.fetch_blob_bytes(pinned, config.digest, config.size, limit=64 + MAX_INDEX + MAX_SIGNATURE)
    art = read_artifact(where, manifest_doc, config_bytes)
    for key, wanted in ((ARCH, arch), (VARIANT, variant)):
        actual = getattr(art.payload.index, key.rsplit(".", 1)[1])
        if wanted is not None and actual != wanted:
            raise IntegrityError("%s: its index is for %s %s, not %s" % (where, key.rsplit(".", 1)[1], actual, wanted))
    return pinned, art


def sha256_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()

"""The golden test vectors of the bundle format (docs/format.md): small payload sections made by the real writer,
built here and written or checked by scripts/golden.py.

The vector holds two groups (files, in two frames, and one embedded image's blobs, in one), an empty file, an image
left to be pulled, a `require_key` and an ed25519 signature by a fixed test key, so that every part of the format
appears once.
A second vector is the same bundle split (docs/format.md 3.6): its section (payload-v<N>-split.bin) and its data
area cut into parts of SPLIT_PART_SIZE bytes beside it (payload-v<N>-split.bin.part001, ...), so that groups
straddle parts. Everything is fixed bytes: the same sources always give the same vectors, byte for byte.

Adding an index field: set it in `index()` below, run scripts/golden.py, then update docs/format.md (the schema, and
the vector's sha256 beside the format version); tests/payload/test_format_spec.py checks all three agree.
"""

import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bundler.build.assemble import build_index
from bundler.build.compress import CompressedGroup, Member, stored_frames
from bundler.build.signing import raw_public_key
from bundler.media.outputs import part_names
from bundler.media.split import part_spans
from payload import FORMAT_VERSION
from payload.groups import compress_frame
from payload.index import LAYERS_RAW, ImageRecord, Part
from payload.layout import header_and_index, read_head, write_section_content
from payload.rules import blob_path
from payload.signing import encode_block, key_id, signed_message

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_DIR = ROOT / "tests" / "golden"
VECTOR = GOLDEN_DIR / f"payload-v{FORMAT_VERSION}.bin"
INDEX_JSON = GOLDEN_DIR / f"payload-v{FORMAT_VERSION}.index.json"
SPLIT_VECTOR = GOLDEN_DIR / f"payload-v{FORMAT_VERSION}-split.bin"
SPLIT_INDEX_JSON = GOLDEN_DIR / f"payload-v{FORMAT_VERSION}-split.index.json"
SPLIT_PART_SIZE = 200  # the data area is 478 bytes: three parts, groups straddling them
# A test key, public on purpose: never trust it anywhere.
TEST_KEY_SEED = hashlib.sha256(b"bundler golden test vector: a public test key, never trust it").digest()
LEVEL = 19

FILES = [
    ("bin/hello", 0o755, b'#!/bin/sh\necho "hello from the golden vector: $*"\n'),
    ("etc/motd", 0o644, b"The bundle format, version %d.\n" % FORMAT_VERSION),
    ("etc/empty", 0o644, b""),
]
PULLED_DIGEST = "sha256:" + hashlib.sha256(b"an image the device pulls").hexdigest()


def _json(document):
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _layer():
    """A one-file layer tar in the plain ustar format, every field fixed."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        data = b"hello from the golden image\n"
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = len(data), 0o644, 0, 0, 0, "", ""
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def image_blobs():
    """(manifest, config, layer) bytes of the embedded image, as `--layers raw` stores them."""
    layer = _layer()
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = _json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": len(layer)}
            ],
        }
    )
    return manifest, config, layer


def _group(name, members, work, counts):
    """The group `name` of `members`, cut into frames of `counts` members each."""
    path, records, start = work / (name + ".zst"), [], 0
    with open(path, "wb") as out:
        for count in counts:
            # As bundler/build/compress.py does.
            size, sha256, csize = compress_frame([m.source for m in members[start : start + count]], out, level=LEVEL)
            records.append((count, size, csize, sha256))
            start += count
    return CompressedGroup(name, tuple(members), path, stored_frames(records))


def _member(work, path, mode, kind, data):
    source = work / hashlib.sha256(path.encode()).hexdigest()
    source.write_bytes(data)
    return Member(path, mode, kind, source, hashlib.sha256(data).hexdigest(), len(data))


def index(groups, public_key):
    """The index of the vector: every field of the format set once."""
    manifest, _, _ = image_blobs()
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    blobs = [m for g in groups if g.name == "images" for m in g.members]
    images = [
        ImageRecord(
            "hello",
            "localhost/hello:golden",
            "linux/amd64",
            manifest_digest,
            True,
            manifest_digest,
            LAYERS_RAW,
            sum(m.size for m in blobs),
        ),
        ImageRecord("pause", "registry.k8s.io/pause:3.10", "linux/amd64", PULLED_DIGEST, False),
    ]
    identity = {
        "name": "golden",
        "version": "4.0.0",
        "variant": "offline",
        "arch": "amd64",
        "entrypoint": ["bin/hello", "--data", "{data}", "--images", "{images}"],
        "description": "The golden test vector of the bundle format",
        "update_repository": "registry.example:5000/golden/hello:stable",
        "pull": "before-start",
        "update_policy": {
            "health": ["bin/hello", "--check"],
            "health_delay": 5,
            "health_timeout": 30,
            "probation_starts": 5,
            "keep": 3,
        },
    }
    # The vector is a section without an executable around it: a fixed stand-in for the stub's sha256.
    return build_index(
        identity,
        groups,
        images=images,
        require_key=key_id(public_key),
        bundler_version="golden",
        min_glibc="2.31",
        min_glibc_file="bin/hello",
        stub_sha256=hashlib.sha256(b"golden: the stub's code").hexdigest(),
    )


def build():
    """(payload section bytes, index as pretty JSON text) of the vector, made now by the real writer."""
    key = Ed25519PrivateKey.from_private_bytes(TEST_KEY_SEED)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = [_member(work, path, mode, "file", data) for path, mode, data in FILES]
        blobs = [
            _member(work, blob_path("sha256:" + hashlib.sha256(data).hexdigest()), 0o644, "blob", data)
            for data in image_blobs()
        ]
        # Two frames in the files group (bin/hello | etc/motd, etc/empty), one for the image's blobs.
        groups = [_group("files", files, work, [1, 2]), _group("images", blobs, work, [3])]
        idx = index(groups, raw_public_key(key))
        index_bytes = idx.to_bytes()
        signature = encode_block(raw_public_key(key), key.sign(signed_message(index_bytes)))
        out = io.BytesIO()
        write_section_content(out, idx, {g.name: g.path for g in groups}, signature)
    return out.getvalue(), _pretty(idx)


def _pretty(idx):
    """The content index and the encoding table as one pretty JSON text, for people to read."""
    return (
        json.dumps({"content index": idx.to_json(), "encoding table": idx.table_json()}, indent=2, sort_keys=True)
        + "\n"
    )


def build_split():
    """(section bytes, {part name: bytes}, index as pretty JSON text) of the split vector: the same bundle, its data
    area cut into parts of SPLIT_PART_SIZE bytes: a new encoding table (with `parts`), the same content index and
    signature, made with no key."""
    section, _ = build()
    whole = read_head("golden", section[: len(section) - int.from_bytes(section[32:40], "little")])
    data = section[len(section) - whole.data_size :]
    spans = part_spans(len(data), SPLIT_PART_SIZE)
    parts = {
        name: data[start : start + size]
        for name, (start, size) in zip(part_names(SPLIT_VECTOR.name, len(spans)), spans)
    }
    idx = whole.index.with_parts([Part(name, len(b), hashlib.sha256(b).hexdigest()) for name, b in parts.items()])
    return header_and_index(idx, whole.signature, whole.index_bytes), parts, _pretty(idx)


def wanted():
    """{path: bytes} of every golden file, made now."""
    section, index_text = build()
    split, parts, split_text = build_split()
    files = {
        VECTOR: section,
        INDEX_JSON: index_text.encode(),
        SPLIT_VECTOR: split,
        SPLIT_INDEX_JSON: split_text.encode(),
    }
    files.update((GOLDEN_DIR / name, data) for name, data in parts.items())
    return files

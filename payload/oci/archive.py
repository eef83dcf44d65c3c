"""Image archives that runtimes import (the device writes them; reading the ones users bring is build-side only,
in bundler/images/archive.py).

The archive written is an OCI image layout in a plain tar that also carries docker's `manifest.json`, so
`ctr images import` (containerd 1.6+), k3s's agent/images, `podman load`, `docker load` and skopeo's
`oci-archive:` and `docker-archive:` transports all accept the same file.
"""

import io
import json
import os
import tarfile
from typing import Callable, Optional, Union

from payload.errors import HostError, IntegrityError
from payload.fs import CHUNK, atomic_file
from payload.oci.reference import (
    OCI_INDEX,
    Descriptor,
    Reference,
    check_digest,
    digest_hasher,
    load_json,
    manifest_media_type,
    parse_image_manifest,
    platform_of,
    sha256_digest,
    verify_bytes,
)
from payload.rules import LAYOUT_BLOBS, layout_blob_path

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
_OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'

BlobSource = Union[dict[str, str], Callable[[str], "io.BufferedIOBase"]]


def blob_path(digest: str) -> str:
    """Where a blob lives inside an OCI layout: `blobs/sha256/<hex>`."""
    return layout_blob_path(check_digest(digest))


def write_image_archive(
    out_path: str,
    ref: Reference,
    manifest_bytes: bytes,
    config_bytes: bytes,
    blobs: BlobSource,
    verify: bool = False,
) -> str:
    """Write the image as an OCI layout tar with docker's manifest.json, atomically (temp file + rename).

    `blobs` maps each layer digest to a file path, or is a callable that opens a layer by digest.
    With `verify`, layer bytes are hashed while written (callers that verified them already skip it).
    """
    config, layers = parse_image_manifest(manifest_bytes, f"manifest of {ref}")
    verify_bytes(config_bytes, config.digest, f"config of {ref}")
    manifest_digest = sha256_digest(manifest_bytes)
    entry = {
        "mediaType": manifest_media_type(manifest_bytes),
        "digest": manifest_digest,
        "size": len(manifest_bytes),
    }
    platform = platform_of(load_json(config_bytes, f"config of {ref}"))
    if platform is not None:
        entry["platform"] = {"architecture": platform.architecture, "os": platform.os}
        if platform.variant:
            entry["platform"]["variant"] = platform.variant
    annotations = {ANNOTATION_IMAGE_NAME: ref.fully_qualified()}
    if ref.tag:
        annotations[ANNOTATION_REF_NAME] = ref.tag
    entry["annotations"] = annotations
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}
    docker_manifest = [
        {
            "Config": blob_path(config.digest),
            "RepoTags": [ref.fully_qualified()] if ref.tag else [],
            "Layers": [blob_path(layer.digest) for layer in layers],
        }
    ]

    try:
        with atomic_file(out_path, mode=0o644) as handle:
            with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
                _add_bytes(tar, "oci-layout", _OCI_LAYOUT)
                _add_bytes(tar, "index.json", json_bytes(index))
                _add_bytes(tar, "manifest.json", json_bytes(docker_manifest))
                _add_directory(tar, LAYOUT_BLOBS)
                _add_directory(tar, os.path.dirname(blob_path(manifest_digest)))
                _add_bytes(tar, blob_path(manifest_digest), manifest_bytes)
                _add_bytes(tar, blob_path(config.digest), config_bytes)
                written = {manifest_digest, config.digest}
                for layer in layers:
                    if layer.digest not in written:
                        _add_layer(tar, layer, blobs, verify, ref)
                        written.add(layer.digest)
    except OSError as error:
        raise HostError(f"cannot write image archive {out_path}: {error.strerror or error}") from None
    return out_path


def _add_layer(tar: tarfile.TarFile, layer: Descriptor, blobs: BlobSource, verify: bool, ref: Reference) -> None:
    if callable(blobs):
        source = blobs(layer.digest)
    else:
        path = blobs.get(layer.digest)
        try:
            source = open(path, "rb") if path else None
        except OSError:
            source = None
        if source is None:
            raise IntegrityError(f"layer {layer.digest} of {ref} is missing ({path or 'no file given'})")
        actual_size = os.fstat(source.fileno()).st_size
        if actual_size != layer.size:
            source.close()
            raise IntegrityError(
                f"layer {layer.digest} of {ref} at {path} has {actual_size} bytes, expected {layer.size}"
            )
    with source:
        what = f"layer {layer.digest} of {ref}"
        reader = VerifyingReader(source, layer.digest, layer.size, what) if verify else source
        info = _tar_info(blob_path(layer.digest), layer.size)
        try:
            tar.addfile(info, reader)
        except OSError as error:
            if "unexpected end of data" in str(error):
                raise IntegrityError(f"layer {layer.digest} of {ref} is shorter than {layer.size} bytes") from None
            raise


class VerifyingReader(io.RawIOBase):
    """Passes bytes through and, at their end, checks their count and digest (IntegrityError if wrong)."""

    def __init__(self, source, digest: str, size: Optional[int], what: str):
        super().__init__()
        self._source = source
        self._digest = digest
        self._size = size
        self._what = what
        self._hasher = digest_hasher(digest)
        self._count = 0
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._source.read(len(buffer))
        if not data:
            self._check()
            return 0
        buffer[: len(data)] = data
        self._hasher.update(data)
        self._count += len(data)
        if self._size is not None and self._count >= self._size:
            self._check()
        return len(data)

    def _check(self) -> None:
        if self._checked:
            return
        self._checked = True
        actual = self._hasher.name + ":" + self._hasher.hexdigest()
        if (self._size is not None and self._count != self._size) or actual != self._digest:
            raise IntegrityError(f"{self._what}: {self._count} bytes with digest {actual}, expected {self._digest}")

    def close(self) -> None:
        self._source.close()
        super().close()


# tar helpers


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))


def _add_directory(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 0
    tar.addfile(info)


def json_bytes(document) -> bytes:
    """Compact JSON, as the archive's index.json and manifest.json are written."""
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def holds_image(path: str, manifest_digest: str) -> bool:
    """Whether the archive at `path` holds the image `manifest_digest` whole, as write_image_archive writes it:
    its index.json names that manifest, every blob hashes to its name, and the manifest's config and layers are
    all there. Reads the archive once; writes nothing."""
    import hashlib

    found, manifest_bytes, named = set(), None, False
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                source = tar.extractfile(member)
                if member.name == "index.json":
                    named = any(m.get("digest") == manifest_digest for m in json.loads(source.read())["manifests"])
                    continue
                algorithm, _, encoded = member.name.partition(LAYOUT_BLOBS + "/sha256/")
                if algorithm or not encoded:
                    continue
                sha = hashlib.sha256()
                keep = "sha256:" + encoded == manifest_digest
                while True:
                    chunk = source.read(CHUNK)
                    if not chunk:
                        break
                    sha.update(chunk)
                    if keep:
                        manifest_bytes = (manifest_bytes or b"") + chunk
                if sha.hexdigest() != encoded:
                    return False
                found.add("sha256:" + encoded)
        if not named or manifest_bytes is None:
            return False
        config, layers = parse_image_manifest(manifest_bytes, f"manifest in {path}")
    except (OSError, tarfile.TarError, ValueError, KeyError, TypeError, AttributeError, IntegrityError):
        return False
    return config.digest in found and all(layer.digest in found for layer in layers)

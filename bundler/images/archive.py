"""Image archives users bring (`oci-archive:`, `docker-archive:`) and layer conversions, read at bundle time only.

The device never reads an image archive, it only writes them (payload/oci/archive.py), so none of this is frozen
into the stub.
"""

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Sequence
from typing import Optional

from payload.errors import HostError, IntegrityError, UsageError
from payload.oci.archive import VerifyingReader, blob_path, json_bytes
from payload.oci.reference import (
    DOCKER_LAYER_FOREIGN,
    DOCKER_LAYER_GZIP,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_LAYER_TAR,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Platform,
    check_digest,
    descriptor_from,
    load_json,
    manifest_media_type,
    parse_image_manifest,
    platform_of,
    select_platform,
    sha256_digest,
    verify_bytes,
)

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_LAYER_WINDOW = 1 << 27  # zstd --long uses up to 128 MiB; layers come from registries, not from us


def uncompressed_manifest(manifest: bytes, config: bytes, layers_info: Sequence[tuple[str, int]]) -> bytes:
    """The manifest of the same image with its layers stored as plain tars.

    `layers_info` gives (digest, size) of each raw layer tar, in order. Their digests are the config's
    `rootfs.diff_ids`, so the config, and with it the image id, stays the same; the manifest digest changes.
    """
    _, layers = parse_image_manifest(manifest, "manifest")
    original = load_json(manifest, "manifest")
    config_document = load_json(config, "image config")
    diff_ids = (config_document.get("rootfs") or {}).get("diff_ids") or []
    layers_info = [(check_digest(digest, "layer digest"), int(size)) for digest, size in layers_info]
    if len(layers_info) != len(layers) or [d for d, _ in layers_info] != list(diff_ids):
        raise IntegrityError(
            "the uncompressed layers do not match the image config's diff_ids: "
            f"{len(layers_info)} layers given, config lists {len(diff_ids)}"
        )
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_TAR, "digest": d, "size": s} for d, s in layers_info],
    }
    if isinstance(original.get("annotations"), dict) and original["annotations"]:
        document["annotations"] = original["annotations"]
    return json_bytes(document)


def uncompress_layer(source, media_type: str, dest_path: str) -> tuple[str, int]:
    """Decompress a layer blob (gzip, zstd or plain tar; `source` a path or binary file) into `dest_path`.

    Returns (sha256 digest, size) of the raw tar: its digest is the layer's diff_id.
    """
    handle = open(source, "rb") if isinstance(source, (str, os.PathLike)) else source
    with handle:
        magic = handle.peek(4)[:4] if hasattr(handle, "peek") else b""
        if media_type in (OCI_LAYER_ZSTD,) or magic.startswith(_ZSTD_MAGIC):
            import zstandard

            stream = zstandard.ZstdDecompressor(max_window_size=_MAX_LAYER_WINDOW).stream_reader(handle)
        elif media_type in (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP, DOCKER_LAYER_FOREIGN) or magic.startswith(_GZIP_MAGIC):
            stream = gzip.GzipFile(fileobj=handle, mode="rb")
        else:
            stream = handle
        hasher = hashlib.sha256()
        size = 0
        try:
            with open(dest_path, "wb") as out:
                for chunk in iter(lambda: stream.read(1 << 20), b""):
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        except (OSError, EOFError) as error:
            if isinstance(error, OSError) and error.errno is not None:
                raise HostError(f"cannot write {dest_path}: {error.strerror}") from None
            raise IntegrityError(f"layer is not valid {media_type or 'compressed data'}: {error}") from None
        except Exception as error:  # zstandard.ZstdError and friends
            raise IntegrityError(f"layer is not valid {media_type or 'compressed data'}: {error}") from None
    return "sha256:" + hasher.hexdigest(), size


def read_image_archive(path: str, platform: Optional[Platform] = None):
    """(manifest bytes, config bytes, open_blob(digest)) of the image in an `oci-archive` or `docker-archive`
    tar. `open_blob` returns a binary reader that raises IntegrityError at its end if the digest does not hold.

    An OCI archive holding several platforms needs `platform`. A docker archive has no manifest: one is
    made (OCI, layers typed by their magic bytes), so its digest is not one any registry knows.
    """
    members = _ArchiveMembers(path)
    if members.has("index.json"):
        manifest_bytes = _oci_manifest(members, platform, path)
        config, _ = parse_image_manifest(manifest_bytes, f"manifest in {path}")
        config_bytes = verify_bytes(members.read(blob_path(config.digest)), config.digest, f"config in {path}")

        def open_blob(digest: str):
            return members.open_verified(blob_path(digest), digest)

        return manifest_bytes, config_bytes, open_blob
    if members.has("manifest.json"):
        return _docker_archive(members, path)
    raise UsageError(f"{path} is neither an oci-archive nor a docker-archive (no index.json, no manifest.json)")


def _oci_manifest(members: "_ArchiveMembers", platform: Optional[Platform], path: str) -> bytes:
    document = load_json(members.read("index.json"), f"index.json in {path}")
    for _depth in range(3):
        entries = [e for e in document.get("manifests") or [] if isinstance(e, dict)]
        if platform is not None and any(platform_of(e) for e in entries):
            entry = select_platform(document, platform, path)
        elif len(entries) == 1:
            entry = entries[0]
        else:
            raise UsageError(f"{path} holds {len(entries)} images; name the platform to take")
        descriptor = descriptor_from(entry, f"index entry in {path}")
        data = verify_bytes(members.read(blob_path(descriptor.digest)), descriptor.digest, f"manifest in {path}")
        media_type = descriptor.media_type or manifest_media_type(data)
        if media_type in MANIFEST_TYPES:
            return data
        if media_type not in INDEX_TYPES:
            raise UsageError(f"{path}: manifest of type {media_type!r} is not an image")
        document = load_json(data, f"index in {path}")
    raise UsageError(f"{path}: indexes nested too deep")


def _docker_archive(members: "_ArchiveMembers", path: str):
    images = json.loads(members.read("manifest.json").decode("utf-8"))
    if not isinstance(images, list) or len(images) != 1 or not isinstance(images[0], dict):
        count = len(images) if isinstance(images, list) else 0
        raise UsageError(f"{path} holds {count} images in manifest.json; one is expected")
    image = images[0]
    config_bytes = members.read(image.get("Config") or "")
    config_digest = sha256_digest(config_bytes)
    layer_members: dict[str, str] = {}
    layers = []
    for layer_name in image.get("Layers") or []:
        digest, size, magic = members.digest_of(layer_name)
        if magic.startswith(_GZIP_MAGIC):
            media_type = OCI_LAYER_GZIP
        elif magic.startswith(_ZSTD_MAGIC):
            media_type = OCI_LAYER_ZSTD
        else:
            media_type = OCI_LAYER_TAR
        layers.append({"mediaType": media_type, "digest": digest, "size": size})
        layer_members[digest] = layer_name
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": layers,
    }

    def open_blob(digest: str):
        if digest not in layer_members:
            raise UsageError(f"{path} has no blob {digest}")
        return members.open_verified(layer_members[digest], digest)

    return json_bytes(manifest), config_bytes, open_blob


class _ArchiveMembers:
    """Random access to the regular files of a plain tar, links resolved, without extracting it."""

    def __init__(self, path: str):
        self.path = path
        try:
            with open(path, "rb") as handle:
                magic = handle.read(4)
            if magic.startswith(_GZIP_MAGIC) or magic.startswith(_ZSTD_MAGIC):
                raise UsageError(f"{path} is compressed; give the plain .tar")
            with tarfile.open(path, mode="r:") as tar:
                infos = {_normalise(info.name): info for info in tar}
        except FileNotFoundError:
            raise UsageError(f"image archive {path} does not exist") from None
        except (OSError, tarfile.TarError) as error:
            raise UsageError(f"cannot read image archive {path}: {error}") from None
        self._files: dict[str, tuple[int, int]] = {}
        for name, info in infos.items():
            target = info
            for _hop in range(8):
                if not (target.issym() or target.islnk()):
                    break
                link = target.linkname if target.islnk() else os.path.join(os.path.dirname(name), target.linkname)
                target = infos.get(_normalise(link), target)
            if target.isfile():
                self._files[name] = (target.offset_data, target.size)

    def has(self, name: str) -> bool:
        return _normalise(name) in self._files

    def _locate(self, name: str) -> tuple[int, int]:
        try:
            return self._files[_normalise(name)]
        except KeyError:
            raise UsageError(f"image archive {self.path} has no {name}") from None

    def open(self, name: str) -> "_SliceReader":
        offset, size = self._locate(name)
        return _SliceReader(self.path, offset, size)

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        offset, size = self._locate(name)
        if size > limit:
            raise UsageError(f"{name} in {self.path} is larger than {limit} bytes")
        with self.open(name) as reader:
            return reader.read()

    def open_verified(self, name: str, digest: str) -> "VerifyingReader":
        offset, size = self._locate(name)
        return VerifyingReader(_SliceReader(self.path, offset, size), digest, size, f"{name} in {self.path}")

    def digest_of(self, name: str) -> tuple[str, int, bytes]:
        """sha256 digest, size and first bytes of a member."""
        hasher = hashlib.sha256()
        size, magic = 0, b""
        with self.open(name) as reader:
            for chunk in iter(lambda: reader.read(1 << 20), b""):
                if not magic:
                    magic = chunk[:4]
                hasher.update(chunk)
                size += len(chunk)
        return "sha256:" + hasher.hexdigest(), size, magic


class _SliceReader(io.RawIOBase):
    """Reads `size` bytes of a file from `offset`: one tar member, in place."""

    def __init__(self, path: str, offset: int, size: int):
        super().__init__()
        self._handle = open(path, "rb")
        self._handle.seek(offset)
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self._left)
        if count <= 0:
            return 0
        data = self._handle.read(count)
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        self._handle.close()
        super().close()


def _normalise(name: str) -> str:
    return os.path.normpath(name.lstrip("/"))

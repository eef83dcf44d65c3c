"""Images at bundle time: pin every image to a manifest digest for the target platform (both variants), and turn
the embedded ones into blob members of the `images` group, each layer stored once however many images share it.

Layers are stored uncompressed by default ("raw"): zstd over the raw tar is about a third smaller than the
registry's gzip, and the image id (config digest, diff_ids) is kept; the manifest digest changes. "exact" keeps
the registry's blobs byte for byte, so the manifest digest is kept too, for users who deploy by digest.
"""

import os
from dataclasses import dataclass

from bundler.build.compress import Member
from bundler.images.archive import read_image_archive, uncompress_layer, uncompressed_manifest
from bundler.manifest.lockfile import image_pin_for
from payload import fs
from payload.errors import IntegrityError, UsageError
from payload.index import LAYERS_RAW, ImageRecord
from payload.oci.reference import parse_image_manifest, parse_platform, parse_reference, sha256_digest
from payload.rules import blob_path


@dataclass(frozen=True)
class PinnedImage:
    spec: object  # ImageSpec
    ref: str  # fully qualified, with the tag as written
    platform: str
    digest: str  # the manifest digest for the platform
    embedded: bool


def local_reference(spec):
    """Images read from a local archive are named after their manifest name."""
    return parse_reference(f"localhost/{spec.name}:latest")


def _reference(spec):
    return local_reference(spec) if spec.transport else parse_reference(spec.ref)


def pin_images(manifest, variant, lock, arch, client, locked, log=print):
    """Every image of the manifest with its digest for `arch` (from the lock, else resolved now)."""
    embedded = set(variant.embed)
    pinned = []
    for spec in manifest.images:
        platform = spec.platform_for(arch)
        if spec.transport and spec.name not in embedded:
            raise UsageError(
                f"{manifest.path}:{spec.line}: image '{spec.name}' comes from a local archive, which a device cannot "
                f"pull; embed it in variant '{variant.name}'"
            )
        digest = image_pin_for(manifest, lock, spec, arch, locked)
        if digest is None:
            digest = resolve_digest(spec, platform, client, log)
        pinned.append(PinnedImage(spec, str(_reference(spec)), platform, digest, spec.name in embedded))
    return pinned


def resolve_digest(spec, platform, client, log=print):
    if spec.transport:
        manifest_bytes, _, _ = read_image_archive(str(spec.archive_path), parse_platform(platform))
        return sha256_digest(manifest_bytes)
    log(f"resolving {spec.ref} for {platform}...")
    return client.resolve(parse_reference(spec.ref), parse_platform(platform)).manifest_digest


class _Store:
    """Puts image blobs into the build cache, by digest."""

    def __init__(self, cache):
        self.cache = cache

    def has(self, digest):
        return self.cache.has(digest.partition(":")[2])

    def path(self, digest):
        return self.cache.blob_path(digest.partition(":")[2])

    def put_bytes(self, data, digest):
        with self.cache.writer(f"image blob {digest}") as blob:
            blob.write(data)
            blob.commit(digest.partition(":")[2])

    def put_stream(self, opener, digest):
        with opener() as src, self.cache.writer(f"image blob {digest}") as blob:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                blob.write(chunk)
            blob.commit(digest.partition(":")[2])


def _fetch_registry_image(image, client, store):
    """(manifest bytes, config bytes) of a pinned registry image, with every layer in the cache."""
    ref = parse_reference(image.spec.ref).with_digest(image.digest)
    if store.has(image.digest):
        manifest_bytes = store.path(image.digest).read_bytes()
    else:
        manifest_bytes = client.fetch_manifest(ref)
        store.put_bytes(manifest_bytes, image.digest)
    config, layers = parse_image_manifest(manifest_bytes, f"manifest of {image.ref}")
    if not store.has(config.digest):
        store.put_bytes(client.fetch_blob_bytes(ref, config.digest, config.size), config.digest)
    for layer in layers:
        if not store.has(layer.digest):
            partial_dir = store.cache.dir("pulls")
            dest = os.path.join(str(partial_dir), layer.digest.partition(":")[2])
            client.fetch_blob(ref, layer.digest, dest, layer.size)
            store.cache.adopt(dest, layer.digest.partition(":")[2], f"layer {layer.digest} of {image.ref}")
    return manifest_bytes, store.path(config.digest).read_bytes()


def _fetch_local_image(image, store):
    archive = image.spec.archive_path
    manifest_bytes, config_bytes, open_blob = read_image_archive(str(archive), parse_platform(image.platform))
    found = sha256_digest(manifest_bytes)
    if found != image.digest:  # the archive was rewritten after its digest was pinned
        raise IntegrityError(
            f"{archive}: image '{image.spec.name}' is {found} now, but {image.digest} is pinned; run `bundler lock` "
            "to pin the new image"
        )
    config, layers = parse_image_manifest(manifest_bytes, f"manifest in {archive}")
    if not store.has(config.digest):  # a member like the layers (it used to be found only when a pull had left it)
        store.put_bytes(config_bytes, config.digest)
    for layer in layers:
        if not store.has(layer.digest):
            store.put_stream(lambda d=layer.digest: open_blob(d), layer.digest)
    return manifest_bytes, config_bytes


def _raw_layers(layers, store):
    """Uncompressed copies of `layers` in the cache; returns [(digest, size)] of the raw tars."""
    raw = []
    for layer in layers:
        raw_sha = store.cache.lookup("raw-layers", layer.digest)
        if raw_sha is None or not store.cache.has(raw_sha):
            tmp = fs.temp_name(store.cache.tmp / "raw-layer")
            try:
                digest, _ = uncompress_layer(str(store.path(layer.digest)), layer.media_type, tmp)
                raw_sha = digest.partition(":")[2]
                store.cache.adopt(tmp, raw_sha, f"uncompressed layer {layer.digest}")
            finally:
                fs.safe_unlink(tmp)
            store.cache.record("raw-layers", layer.digest, raw_sha)
        path = store.cache.blob_path(raw_sha)
        raw.append(("sha256:" + raw_sha, path.stat().st_size))
    return raw


def embed_images(pinned, client, cache, layers_mode=LAYERS_RAW, log=print):
    """Blob members for the embedded images (deduplicated), and the index's image records for all of them."""
    store = _Store(cache)
    members = {}
    records = []
    for image in pinned:
        if not image.embedded:
            records.append(ImageRecord(image.spec.name, image.ref, image.platform, image.digest, False))
            continue
        log(f"embedding {image.spec.name} ({image.digest[:19]})...")
        if image.spec.transport:
            manifest_bytes, config_bytes = _fetch_local_image(image, store)
        else:
            manifest_bytes, config_bytes = _fetch_registry_image(image, client, store)
        config, layers = parse_image_manifest(manifest_bytes, f"manifest of {image.ref}")
        if layers_mode == LAYERS_RAW:
            raw = _raw_layers(layers, store)
            manifest_bytes = uncompressed_manifest(manifest_bytes, config_bytes, raw)
            layer_digests = [d for d, _ in raw]
        else:
            layer_digests = [layer.digest for layer in layers]
        manifest_digest = sha256_digest(manifest_bytes)
        if not store.has(manifest_digest):
            store.put_bytes(manifest_bytes, manifest_digest)
        blobs = [manifest_digest, config.digest] + layer_digests
        for digest in blobs:
            if digest not in members:
                path = store.path(digest)
                members[digest] = Member(
                    blob_path(digest), 0o644, "blob", path, digest.partition(":")[2], path.stat().st_size
                )
        records.append(
            ImageRecord(
                image.spec.name,
                image.ref,
                image.platform,
                image.digest,
                True,
                manifest_digest,
                layers_mode,
                sum(members[d].size for d in set(blobs)),
            )
        )
    return list(members.values()), records

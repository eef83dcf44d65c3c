"""Images on the device: one archive per image in BUNDLE_IMAGES, which `ctr images import`, skopeo, podman and
k3s all read. Embedded images are written at install from their blobs; images the online variant left out are
pulled by their pinned digest (never by tag), verified, and written atomically."""

import os
import sys

from payload import fs
from payload.errors import IntegrityError
from payload.rules import DIR_MODE, IMAGES_DIR, LAYOUT_BLOBS, blob_path
from stub.root import PULLS_DIR


def _blob(root, digest):
    return os.path.join(root, blob_path(digest))


def _read_blob(root, digest, image, what):
    try:
        with open(_blob(root, digest), "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise IntegrityError(
            f"image {image.name!r}: its {what} {digest} is not in the bundle; the bundle is damaged, copy it again"
        ) from None


def write_embedded(work, index):
    """At install, in the work dir: turn the extracted blobs into one archive per embedded image that is not
    there already."""
    import shutil

    from payload.oci.archive import write_image_archive
    from payload.oci.reference import parse_image_manifest, parse_reference

    images = os.path.join(work, IMAGES_DIR)
    fs.safe_mkdir(images, DIR_MODE)
    for image in index.images:
        if not image.embedded or os.path.exists(os.path.join(images, image.archive_name)):
            continue  # linked from another version that holds it (stub/shared.py)
        manifest_bytes = _read_blob(work, image.manifest, image, "manifest")
        config, layers = parse_image_manifest(manifest_bytes, f"manifest of {image.name}")
        config_bytes = _read_blob(work, config.digest, image, "config")
        blobs = dict((layer.digest, _blob(work, layer.digest)) for layer in layers)
        write_image_archive(
            os.path.join(images, image.archive_name), parse_reference(image.ref), manifest_bytes, config_bytes, blobs
        )
    shutil.rmtree(os.path.join(images, LAYOUT_BLOBS), ignore_errors=True)


def missing(inst, index):
    return [i for i in index.images if not i.embedded and not os.path.exists(os.path.join(inst.images, i.archive_name))]


def _registries(values, env_name, environ, parse=None):
    from payload.oci.reference import parse_registry_host

    extra = [v for v in environ.get(env_name, "").replace(",", " ").split() if v]
    return tuple((parse or parse_registry_host)(v) for v in list(values) + extra)


def registry_client(opts, environ):
    """The registry client of this start: mirrors and insecure registries from the options and the environment.
    A mirror is checked like any registry (https with a verified certificate) unless it is also named insecure."""
    from payload.oci.reference import parse_insecure_registry
    from payload.oci.registry import RegistryClient

    mirrors = _registries(opts.registry_mirror, "BUNDLE_REGISTRY_MIRRORS", environ)
    insecure = _registries(opts.insecure_registry, "BUNDLE_INSECURE_REGISTRIES", environ, parse_insecure_registry)
    return RegistryClient(insecure_registries=insecure, mirrors=mirrors)


def will_pull(inst, index, opts):
    return not opts.no_pull and bool(missing(inst, index))


def start_pull_early():
    """Import the network stack now, in a thread, for a pull that follows the install."""
    # hashlib first, on this thread: it unpacks the stub's on-demand OpenSSL set (stub/lazylibs.py) before a second
    # thread exists. Unpacked by the import thread while this one installs (imports of its own), the two threads
    # could wait for each other for good.
    import hashlib  # noqa: F401

    from payload import http

    return http.import_in_background("payload.oci.registry")


def pull_missing(inst, index, opts, environ):
    """Pull what the online variant left out. Already pulled: nothing to do, no network touched."""
    todo = missing(inst, index)
    if not todo or opts.no_pull:
        return
    import shutil

    from stub import locking
    from stub.root import LOCK

    lock = locking.exclusive(os.path.join(inst.root, LOCK))
    try:
        todo = missing(inst, index)  # another start may have pulled them while we waited
        if not todo:
            return
        pulls = os.path.join(inst.root, PULLS_DIR)
        os.makedirs(pulls, exist_ok=True)
        with registry_client(opts, environ) as client:
            for image in todo:
                sys.stderr.write(f"{index.name}: pulling {image.ref} ({image.digest[:19]})\n")
                _pull_one(client, image, inst, pulls)
        shutil.rmtree(pulls, ignore_errors=True)
    finally:
        os.close(lock)


def _pull_one(client, image, inst, pulls):
    from payload.oci.archive import write_image_archive
    from payload.oci.reference import parse_image_manifest, parse_reference

    ref = parse_reference(image.ref)
    pinned = ref.with_digest(image.digest)
    manifest_bytes = client.fetch_manifest(pinned)
    config, layers = parse_image_manifest(manifest_bytes, f"manifest of {image.name}")
    config_bytes = client.fetch_blob_bytes(pinned, config.digest, config.size)
    blobs = {}
    for layer in layers:
        # Partial blobs stay in .pulls after a failure, so the next start resumes them with Range; a whole one
        # found there is hashed again before it is used (blobs are not fsync'ed: only the archive is).
        dest = os.path.join(pulls, layer.digest.partition(":")[2])
        blobs[layer.digest] = client.fetch_blob(pinned, layer.digest, dest, layer.size)
    fs.safe_mkdir(inst.images, DIR_MODE)
    write_image_archive(os.path.join(inst.images, image.archive_name), ref, manifest_bytes, config_bytes, blobs)

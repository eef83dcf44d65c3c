"""Images on the device: one archive per image in BUNDLE_IMAGES, which `ctr images import`, skopeo, podman and
k3s all read. Embedded images are written at install from their blobs; images the online variant left out are
pulled by their pinned digest (never by tag), verified, and renamed in atomically (stub/pulls.py says when)."""

import os

from payload import fs
from payload.errors import HostError, IntegrityError
from payload.rules import DIR_MODE, IMAGES_DIR, LAYOUT_BLOBS, blob_path
from stub.root import IMAGES_STATE as STATE_FILE
from stub.root import LOCK

REGISTRY_AUTH_ENV = "BUNDLE_REGISTRY_AUTH"


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
    there already, and write the state file (embedded images ready, the others pending)."""
    images = os.path.join(work, IMAGES_DIR)
    fs.safe_mkdir(images, DIR_MODE)
    if not index.images:
        fs.safe_rmtree(os.path.join(images, LAYOUT_BLOBS))  # blobs of no image: nothing to write them into
        return
    # Here, not at the top: a bundle without images never needs the archive writer (tarfile, json, ...)
    import shutil

    from payload.oci.archive import write_image_archive
    from payload.oci.reference import parse_image_manifest, parse_reference

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
    write_state(images, index)


def missing(inst, index):
    return [i for i in index.images if not i.embedded and not os.path.exists(os.path.join(inst.images, i.archive_name))]


def _registries(values, env_name, environ, parse=None):
    from payload.oci.reference import parse_registry_host

    extra = [v for v in environ.get(env_name, "").replace(",", " ").split() if v]
    return tuple((parse or parse_registry_host)(v) for v in list(values) + extra)


def registry_auth(opts, environ):
    """The docker config.json named by --bundle-registry-auth, else $BUNDLE_REGISTRY_AUTH, as an absolute path (the
    background puller gets this path, never the credentials); None leaves the client's own lookup
    ($REGISTRY_AUTH_FILE, else ~/.docker/config.json)."""
    path = opts.registry_auth or environ.get(REGISTRY_AUTH_ENV)
    if path and not opts.registry_auth:  # the option was checked with the others; the variable when it is used
        from stub.options import check_registry_auth

        check_registry_auth(path, REGISTRY_AUTH_ENV)
    return os.path.abspath(path) if path else None


def registry_client(opts, environ, progress=None):
    """The registry client of this start: mirrors, insecure registries and credentials from the options and the
    environment. A mirror is checked like any registry (https with a verified certificate) unless it is also named
    insecure. Proxies come from the environment as requests reads it (docs/images.md)."""
    from payload.oci.reference import parse_insecure_registry
    from payload.oci.registry import RegistryClient

    mirrors = _registries(opts.registry_mirror, "BUNDLE_REGISTRY_MIRRORS", environ)
    insecure = _registries(opts.insecure_registry, "BUNDLE_INSECURE_REGISTRIES", environ, parse_insecure_registry)
    return RegistryClient(
        insecure_registries=insecure, mirrors=mirrors, auth_file=registry_auth(opts, environ), progress=progress
    )


def start_pull_early():
    """Import the network stack now, in a thread, for a pull that follows the install."""
    # hashlib first, on this thread: it unpacks the stub's on-demand OpenSSL set (stub/lazylibs.py) before a second
    # thread exists. Unpacked by the import thread while this one installs (imports of its own), the two threads
    # could wait for each other for good.
    import hashlib  # noqa: F401

    from payload import http

    return http.import_in_background("payload.oci.registry")


def pull_one(client, image, inst, pulls, on_state):
    """Pull one image by its pinned digest into `pulls`, verified, then rename its archive into BUNDLE_IMAGES
    under the install lock (held for the rename only). on_state(image, state, detail) hears of each step."""
    from payload import fs
    from payload.oci.archive import write_image_archive
    from payload.oci.reference import parse_image_manifest, parse_reference
    from stub import locking

    on_state(image, PULLING, "")
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
    staged = write_image_archive(os.path.join(pulls, image.archive_name), ref, manifest_bytes, config_bytes, blobs)
    lock = locking.exclusive(os.path.join(inst.root, LOCK))
    try:
        if not os.path.isdir(inst.path):
            raise HostError(f"version {inst.bundle_id} was removed from {inst.root} while its images were pulled")
        fs.safe_mkdir(inst.images, DIR_MODE)
        fs.commit(staged, os.path.join(inst.images, image.archive_name))
        on_state(image, READY, "")
    finally:
        os.close(lock)


# BUNDLE_IMAGES/.state: one line per image of the bundle, in the index's order, four tab-separated fields:
# name, state, pinned digest, detail (the last failure, or empty). docs/images.md documents it.
READY, PENDING, PULLING, FAILED = "ready", "pending", "pulling", "failed"


def write_state(images_dir, index, changes=None):
    """Write the state file of `images_dir` atomically: an image whose archive is there is ready, one in
    `changes` ({name: (state, detail)}) has that state, the others keep the state the file gave them (pending
    when it gave none)."""
    known = read_state(images_dir)
    lines = []
    for image in index.images:
        if os.path.exists(os.path.join(images_dir, image.archive_name)):
            state, detail = READY, ""
        elif changes and image.name in changes:
            state, detail = changes[image.name]
        elif image.name in known and known[image.name][0] != READY:
            state, detail = known[image.name][0], known[image.name][2]
        else:
            state, detail = PENDING, ""
        detail = " ".join(detail.split())  # one line, no tabs
        lines.append(f"{image.name}\t{state}\t{image.digest}\t{detail}\n")
    fs.write_atomic(os.path.join(images_dir, STATE_FILE), "".join(lines))


def read_state(images_dir):
    """{name: (state, digest, detail)} from the state file of `images_dir`; empty when there is none."""
    try:
        with open(os.path.join(images_dir, STATE_FILE), encoding="utf-8") as f:
            text = f.read()
    except (OSError, ValueError):
        return {}
    found = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 4 and not line.startswith("#"):
            found[fields[0]] = (fields[1], fields[2], fields[3])
    return found

"""--bundle-update [REF]: replace this bundle file with the version a registry holds, fetching only what changed.

Order (docs/fleet.md): the manifest and its config (the signed index) first; the signature against the keys this
device trusts before anything else is fetched; then each blob of the new executable from the first source that
has it: this bundle file when its sha256 is unchanged, a delta (fetch_delta, a hook), else the registry, whole.
The new executable is rebuilt beside the old one, every blob hashed on the way (a frame a delta gave is encoded
again here: the file keeps the bundle id and the signature, its encoding table says which frames and at which
level), then installed from there (every entry verified) as `current` (the old `current` becomes `previous`), and
only then renamed over the old file, which is kept under the install root (KEPT_DIR) so --bundle-rollback can put
it back. Nothing is run.

Blobs fetched are kept in <root>/.updates/<new bundle id>/ until the update is complete, so an interrupted update
resumes (each kept blob is re-hashed before it is used).
"""

import os

from payload import fs
from payload.errors import HostError, IntegrityError, UsageError
from payload.oci import artifact
from payload.signing import signer
from payload.sizes import size_text
from stub.root import CURRENT, KEPT_DIR, LOCK, UPDATES_DIR, Installation, default_root

OUTPUT_OPTION = "--bundle-update-output"


def kept_path(root, bundle_id):
    return os.path.join(root, KEPT_DIR, bundle_id)


def update(payload, f, path, opts, environ):
    """Update the bundle file `path` (open as `f`, its payload `payload`); returns the summary line."""
    from payload.layout import open_payload
    from stub import images, install, locking, owner, probation, trust

    index = payload.index
    reference = _reference(index, opts)
    output = os.path.abspath(opts.update_output or path)
    _check_writable(output, bool(opts.update_output))
    root = os.path.abspath(opts.dir or default_root(index.name, environ))
    install.prepare_root(root)
    owner.check(root, index.name)
    downloads_root = os.path.join(root, UPDATES_DIR)
    fs.safe_mkdir(downloads_root)
    lock = locking.exclusive(os.path.join(downloads_root, LOCK))  # one update at a time (install has its own)
    downloads = None
    try:
        with images.registry_client(opts, environ) as client:
            pinned, art = artifact.resolve(client, reference, index.arch, index.variant)
            new = art.payload
            key_to_pin = _accept(payload, new, pinned, root, opts)
            if new.bundle_id == payload.bundle_id and output == path:
                return f"{path}: {index.name} {index.version} is already what {reference} holds; nothing fetched"
            refusal = _refusal(payload, new, root, pinned, opts)
            if refusal is not None:
                raise HostError(refusal)
            downloads = os.path.join(downloads_root, new.bundle_id)
            fs.safe_mkdir(downloads)
            sources = _Sources(payload, f, path, client, pinned, art, downloads, kept_path(root, new.bundle_id))
            sources.deltas = _deltas(client, pinned, art, payload, root, downloads, opts, environ)
            for blob in art.blobs.layers:
                sources.find(blob)
            fs.remove_dead_temps(os.path.dirname(output), "." + os.path.basename(output) + fs.TEMP_MARK)
            with fs.atomic_path(output, mode=0o755) as temp:
                built_art = _write_executable(temp, art, sources, downloads)
                artifact.verify_rebuilt(temp, built_art)
                if output == path:  # kept first: once the new version is current, the old file needs it
                    _keep(root, payload.bundle_id, path)
                with open(temp, "rb") as built:
                    rebuilt = open_payload(temp, built)
                    inst = Installation(root, rebuilt.bundle_id)
                    replaced = fs.link_target(os.path.join(root, CURRENT))
                    install.install(
                        rebuilt,
                        built,
                        inst,
                        after_extract=lambda work: images.write_embedded(work, rebuilt.index),
                        decoded=sources.deltas.decoded,
                    )
        if key_to_pin is not None:
            trust.pin(root, key_to_pin)
        install_lock = locking.exclusive(os.path.join(root, LOCK))
        try:
            probation.begin(
                root, new.bundle_id, replaced, new.index, f"{index.version} -> {new.index.version} from {pinned}"
            )
        finally:
            os.close(install_lock)
        fs.safe_rmtree(downloads)
        fs.safe_unlink(kept_path(root, new.bundle_id))  # current now: a rollback needs the file of previous only
    except IntegrityError:
        # What failed a check is not kept for a resume: a refused update leaves nothing behind.
        if downloads is not None:
            fs.safe_rmtree(downloads)
        raise
    except OSError as exc:
        raise HostError(
            "cannot update {}: {}{}".format(output, exc.strerror or exc, f" ({exc.filename})" if exc.filename else "")
        ) from None
    finally:
        os.close(lock)
    return (
        f"{output}: updated {index.name} {index.version} -> {new.index.version} from {pinned}: fetched "
        f"{size_text(sources.fetched)} of {size_text(art.file_size)} ({sources.fetched_blobs} of "
        f"{len(art.blobs.layers)} blobs; {sources.reused} reused from this file or a kept one)"
        f"{sources.deltas.summary()}; the next start runs {new.index.version}"
        f"{probation.summary(new.index.update_policy)}"
    )


def _reference(index, opts):
    reference = opts.update if isinstance(opts.update, str) else index.update_repository
    if not reference:
        raise UsageError(
            f"{index.name} records no update repository; name one: --bundle-update REGISTRY/REPO:TAG (or set "
            "[update] repository in the manifest)"
        )
    return reference


def _accept(payload, new, pinned, root, opts):
    """Refuse the bundle `new` (its signed index only, fetched from `pinned`) unless it may replace `payload`:
    the same name, a signature by every key this device trusts (the running bundle's signer among them: a signed
    bundle is replaced only by one its signer or a pin vouches for), a glibc this system has. Returns the key to
    pin once it is installed, or None."""
    from stub import install, trust

    index = payload.index
    new.path = f"{new.index.name} (from {pinned})"
    if new.index.name != index.name:
        raise UsageError(
            f"{pinned} holds bundle {new.index.name!r}, not an update of {index.name!r}; check the reference"
        )
    key_to_pin = trust.check_before_install(
        new, root, opts.key, pin_signer=not opts.no_pin, running_signer=signer(payload)
    )
    install.check_glibc(new.index)
    _check_same_signer(payload, new)
    return key_to_pin


def check(payload, opts, environ):
    """--bundle-update [REF] --bundle-check: whether REF holds an update this file would install; fetches the
    manifest and the signed index only, and writes nothing. Returns (exit code, line): 0 up to date (the same
    bundle, an older version, or one this device rolled back on its own), UPDATE_AVAILABLE when there is one."""
    from payload.errors import UPDATE_AVAILABLE
    from stub import images

    index = payload.index
    reference = _reference(index, opts)
    root = os.path.abspath(opts.dir or default_root(index.name, environ))
    with images.registry_client(opts, environ) as client:
        pinned, art = artifact.resolve(client, reference, index.arch, index.variant)
    new = art.payload
    _accept(payload, new, pinned, root, opts)
    this, there = f"{index.name} {index.version}", f"{new.index.name} {new.index.version}"
    if new.bundle_id == payload.bundle_id:
        return 0, f"{this} is up to date with {reference}"
    refusal = _refusal(payload, new, root, reference, opts)
    if refusal is not None:
        return 0, f"{this} is up to date: {refusal}"
    return UPDATE_AVAILABLE, f"{this}: {reference} holds {there} ({new.bundle_id[:12]}); --bundle-update installs it"


def _refusal(payload, new, root, where, opts):
    """Why this device would not install `new` from `where`, or None: one rule for --bundle-update (which refuses,
    exit 4) and --bundle-check (up to date). A version rolled back here on its own needs --bundle-force, an older
    one --bundle-allow-downgrade."""
    from payload.versions import is_older
    from stub import probation

    there = f"{new.index.name} {new.index.version}"
    reason = probation.refused(root, new.bundle_id)
    if reason is not None and not opts.force:
        return (
            f"{where} holds {there} ({new.bundle_id[:12]}), which was rolled back on this device ({reason}); add "
            f"{probation.FORCE} to install it again"
        )
    if is_older(new.index.version, payload.index.version) and not opts.allow_downgrade:
        return (
            f"{where} holds the older {there} (this is {payload.index.version}); add --bundle-allow-downgrade to "
            "install it"
        )
    return None


def _write_executable(temp, art, sources, downloads):
    """Write the new executable at `temp` from its blobs; returns the artifact it is (what verify_rebuilt checks).
    With frames a delta gave (encoded here, stub/deltas.py) or taken in another encoding from this file or the kept
    one (_Sources._same_content), the file has the published content index and signature, so the same bundle id,
    but an encoding table of its own, and its section another size."""
    reencoded = {**sources.reframed, **sources.deltas.reencoded}
    if not reencoded:
        with open(temp, "wb") as out:
            artifact.rebuild(out, art, sources.open)
        return art
    own = artifact.reencoded(art, reencoded)
    for published, (sha256, _, _) in reencoded.items():
        held = sources.files if published in sources.files else sources.chosen
        held["sha256:" + sha256] = held[published]
    scratch = os.path.join(downloads, "rebuild")
    fs.safe_rmtree(scratch)
    os.makedirs(scratch)
    try:
        artifact.rebuild_reencoded(temp, art, own, sources.open, scratch)
    finally:
        fs.safe_rmtree(scratch)
    return own


def _check_writable(output, named):
    """Refuse (exit 4) before any network use when the new file could not be written where it goes."""
    directory = os.path.dirname(output)
    try:
        probe = fs.temp_name(output)
    except OSError as exc:
        hint = "name a writable place" if named else "name a writable place for the new file"
        raise HostError(
            f"cannot write the new executable in {directory} ({exc.strerror or exc}); {hint} with {OUTPUT_OPTION} PATH"
        ) from None
    fs.safe_unlink(probe)


def _check_same_signer(running, new):
    """A running bundle that requires a key is replaced only by a bundle signed by that key too."""
    from payload.signing import claimed_signer_in, required_key

    wanted = required_key(running)
    if wanted is not None:
        claimed_signer_in(new, [wanted], "the running bundle's require_key")


def _keep(root, bundle_id, path):
    """Keep the bundle file being replaced under the root, for --bundle-rollback (a hard link where it can)."""
    target = kept_path(root, bundle_id)
    if os.path.exists(target):
        return
    fs.safe_mkdir(os.path.dirname(target))
    fs.remove_dead_temps(os.path.dirname(target))
    fs.link_or_copy(path, target)


class _Sources:
    """Where each blob of the new executable comes from: the new version's own file when an update or a rollback
    kept it (KEPT_DIR), this bundle file, a frame of either with the same content in another encoding, a delta, or
    the registry."""

    def __init__(self, payload, f, path, client, pinned, art, downloads, kept=None):
        self.client, self.pinned, self.art, self.downloads = client, pinned, art, downloads
        self.path, self.fetched, self.fetched_blobs, self.reused = path, 0, 0, 0
        # (file, spans) of frames by digest; this file's stub and archive by media type (their digest is not
        # indexed); every blob of the kept file by digest (it is the new version's file: its blobs are the new ones).
        self.local, self.kept, self.chosen = {}, {}, {}
        self.files = {}
        self.deltas = None  # stub/deltas.Deltas, set by update()
        # Frames of this file and of the kept one by their content (_content), and the published frames taken
        # from them in another encoding: digest -> (sha256, csize, level) of the frame the new file holds instead.
        self.by_content, self.reframed = {}, {}
        if not payload.split:  # a split bundle's frames are in its parts: fetched whole
            own = artifact.bundle_blobs(payload, f)
            self.local.update((blob.digest, (path, blob.spans)) for blob in own.frames)
            self.local.update((blob.media_type, (path, blob.spans)) for blob in (own.elf, own.stub, own.archive))
            self.by_content = _frames_by_content(payload, path)
        if kept is not None and os.path.isfile(kept):
            self.kept = _blobs_of(kept)
            self.by_content.update(self.kept.pop(None, {}))

    def find(self, blob):
        for where in (self.kept.get(blob.digest), self.local.get(blob.digest) or self.local.get(blob.media_type)):
            if where is not None and artifact.spans_match(where[0], where[1], blob.digest):
                self.reused += 1
                self.chosen[blob.digest] = where
                return
        if blob.frame is not None and self._same_content(blob):
            return
        found = fetch_delta(self, blob)
        if found is None:
            found, size = artifact.fetch_blob_into(self.client, self.pinned, blob, self.downloads)
            self.fetched += size
            self.fetched_blobs += 1
        self.files[blob.digest] = found

    def _same_content(self, blob):
        """Take a frame whose content (its entries' sizes and sha256s, in order) this file or the kept one holds in
        another encoding: one a delta update encoded again here, or one made at another level. Its bytes are
        checked against the sha256 that file's table gives; its entries, at install, against the signed index."""
        from payload.delta import frame_entries

        entries = frame_entries(self.art.payload.index, blob.frame.group, blob.frame.sha256)
        found = None if entries is None else self.by_content.get(_content(entries))
        if found is None or not artifact.spans_match(found[0], found[1], "sha256:" + found[2].sha256):
            return False
        path, spans, frame = found
        self.reused += 1
        self.chosen[blob.digest] = (path, spans)
        self.reframed[blob.digest] = (frame.sha256, frame.csize, frame.level)
        return True

    def open(self, blob):
        if blob.digest in self.files:
            return open(self.files[blob.digest], "rb")
        return artifact.SpanReader(*self.chosen[blob.digest])


def _blobs_of(path):
    """{digest: (path, spans)} of every blob of the bundle file at `path`, and under None its frames by content
    (_frames_by_content); {} when it is not a whole bundle (each blob is hashed again before it is used)."""
    from payload.errors import BundleError
    from payload.layout import open_payload

    try:
        with open(path, "rb") as f:
            kept = open_payload(path, f)
            if kept.split:
                return {}
            found = {b.digest: (path, b.spans) for b in artifact.bundle_blobs(kept, f).layers}
            found[None] = _frames_by_content(kept, path)
            return found
    except (OSError, BundleError):
        return {}


def _content(entries):
    """What a frame decodes to, as the index says: its entries' sizes and sha256s in stream order."""
    return tuple((e.size, e.sha256) for e in entries)


def _frames_by_content(payload, path):
    """{content: (path, spans, Frame)} of every frame of the whole bundle file at `path` (its payload `payload`)."""
    index, found = payload.index, {}
    for group in index.groups:
        for frame, held in group.split_entries(index.entries_of(group.name)):
            found[_content(held)] = (path, ((payload.data_offset + frame.offset, frame.csize),), frame)
    return found


def _deltas(client, pinned, art, payload, root, downloads, opts, environ):
    from payload.delta import memory_bound
    from stub.deltas import Deltas

    return Deltas(client, pinned, art, payload, root, downloads, memory_bound(environ, opts.delta_memory))


def fetch_delta(sources, blob):
    """The path of `blob` rebuilt from a published delta against what is installed, or None (fetch it whole;
    stub/deltas.py). Whatever it returns is hashed against the blob's digest in rebuild()."""
    return sources.deltas.frame(sources, blob)

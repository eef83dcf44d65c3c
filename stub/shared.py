"""Versions share storage: what the other installed versions of this root already hold, for an install to link
instead of writing a second copy (docs/format.md, section 8).

A file entry is held when another installed version has a file entry of the same sha256 and mode (a hard link
shares its mode, so the mode is part of the key); extraction still decodes and hashes every byte, and keeps the
link only when the held file's bytes equal the verified stream (payload/groups.py). An image is held when
another version has the archive of the same reference and manifest; that archive is re-read and every blob in it
hashed before it is linked. Only called under the install lock, so no version goes away meanwhile; nothing here
is ever written in place, so a version removed, repaired or rolled back leaves the others' inodes as they are.
"""

import os

from payload import fs, rules
from stub.root import Installation, version_dirs


def _image_key(doc):
    """An archive's bytes follow from its reference and its manifest: the stored one for an embedded image, the
    pinned one for a pulled image."""
    return doc.get("ref"), doc.get("manifest") if doc.get("embedded") else doc.get("digest")


class Held:
    """Files and image archives the other installed versions under `root` hold."""

    def __init__(self, root, bundle_id):
        self.files, self.archives = {}, {}  # (sha256, mode) -> path; image key -> [paths]
        for name in version_dirs(root, installed_only=True):
            if name == bundle_id:
                continue
            other = Installation(root, name)
            doc = other.index_doc()
            try:
                for e in doc["entries"]:
                    if e["kind"] == "file" and rules.path_problem(e["path"]) is None:
                        self.files.setdefault((e["sha256"], e["mode"]), os.path.join(root, name, e["path"]))
                for i in doc["images"]:
                    if rules.is_name(i.get("name")):
                        path = os.path.join(root, name, rules.IMAGES_DIR, i["name"] + ".tar")
                        self.archives.setdefault(_image_key(i), []).append(path)
            except (KeyError, TypeError, AttributeError):
                continue  # a version without a readable record shares nothing

    def file(self, entry):
        """The path of a file holding the file `entry` (to be compared byte for byte), or None."""
        return self.files.get((entry.sha256, entry.mode)) if entry.kind == "file" else None

    def extraction(self, index, linked):
        """What extract_group does with each entry (its `held`): a file entry is linked to the file held, if any;
        once every embedded image's archive is `linked`, their blobs are hashed but not written."""
        from payload.groups import VERIFY_ONLY

        skip_blobs = all(i.name in linked for i in index.images if i.embedded)

        def held(entry):
            if entry.kind == "blob":
                return VERIFY_ONLY if skip_blobs else None
            return self.file(entry)

        return held

    def shared_size(self, index):
        """Bytes of `index`'s files that other versions hold: an install needs no room for them."""
        return sum(e.size for e in index.files() if self.file(e) is not None)

    def link_archives(self, work, index):
        """Link into the work dir's images/ every image archive another version holds, once that archive is
        found whole (a copy where the file system refuses links). Returns the names of the images linked."""
        linked = set()
        if not index.images:
            return linked  # nor any import of the archive reader (tarfile, json, ...)
        from payload.oci.archive import holds_image

        for image in index.images:
            digest = image.manifest if image.embedded else image.digest
            for path in self.archives.get(_image_key(image.to_json()), ()):
                if not os.path.isfile(path):
                    continue
                target = os.path.join(work, rules.IMAGES_DIR, image.archive_name)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                fs.link_or_copy(path, target)
                if holds_image(target, digest):  # the linked inode itself, so nothing can change in between
                    linked.add(image.name)
                    break
                os.unlink(target)
        return linked

"""The index: the one record of what a bundle holds. Its sha256 is the bundle id.

The index is canonical JSON (sorted keys, no spaces) so that the same content always gives the same id.
"""

import hashlib
import json
import re

from . import FORMAT_VERSION
from .errors import IntegrityError
from .paths import check_relative

ARCHES = ("amd64", "arm64", "arm", "riscv64")
KINDS = ("file", "blob")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# Names become paths on the device (/var/lib/NAME, images/NAME.tar): the manifest's rule, checked again here.
_NAME = re.compile(r"[a-z][a-z0-9-]*")


def _require(cond, message):
    if not cond:
        raise IntegrityError("bundle index is invalid: %s; the bundle is damaged, copy it again" % message)


def _is_int(value, minimum=0):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_image(image, blobs):
    name = image.get("name")
    _require(isinstance(name, str) and _NAME.fullmatch(name), "image name %r is not a plain name" % (name,))
    _require(isinstance(image.get("ref"), str) and image["ref"], "image %r: ref is missing" % name)
    _require(isinstance(image.get("digest"), str) and _DIGEST.fullmatch(image["digest"]), "image %r: bad digest" % name)
    _require(isinstance(image.get("embedded"), bool), "image %r: embedded is not true or false" % name)
    if image["embedded"]:
        _require(isinstance(image.get("manifest"), str) and _DIGEST.fullmatch(image["manifest"]),
                 "image %r: bad manifest digest" % name)
        _require(image["manifest"] in blobs, "image %r: its manifest %s is not an entry" % (name, image["manifest"]))


class Group(object):
    """A zstd frame holding the concatenated bytes of its entries (solid compression)."""

    __slots__ = ("name", "offset", "csize", "size", "sha256")

    def __init__(self, name, offset, csize, size, sha256):
        self.name, self.offset, self.csize, self.size, self.sha256 = name, offset, csize, size, sha256

    def to_json(self):
        return {"name": self.name, "offset": self.offset, "csize": self.csize, "size": self.size, "sha256": self.sha256}


class Entry(object):
    """One file (or image blob) and where its bytes sit inside its group's decompressed stream."""

    __slots__ = ("path", "kind", "mode", "size", "sha256", "group", "offset")

    def __init__(self, path, kind, mode, size, sha256, group, offset):
        self.path, self.kind, self.mode, self.size = path, kind, mode, size
        self.sha256, self.group, self.offset = sha256, group, offset

    def to_json(self):
        return {"path": self.path, "kind": self.kind, "mode": self.mode, "size": self.size,
                "sha256": self.sha256, "group": self.group, "offset": self.offset}


class Index(object):
    """What a bundle holds: identity, entrypoint, groups, entries and images."""

    def __init__(self, name, version, variant, arch, bundler_version, entrypoint, groups, entries,
                 images=(), require_key=None):
        self.name = name
        self.version = version
        self.variant = variant
        self.arch = arch
        self.bundler_version = bundler_version
        self.entrypoint = list(entrypoint)
        self.groups = list(groups)
        self.entries = list(entries)
        self.images = [dict(i) for i in images]
        self.require_key = require_key

    def to_json(self):
        doc = {
            "format": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "variant": self.variant,
            "arch": self.arch,
            "bundler_version": self.bundler_version,
            "entrypoint": self.entrypoint,
            "groups": [g.to_json() for g in self.groups],
            "entries": [e.to_json() for e in self.entries],
            "images": self.images,
        }
        if self.require_key:
            doc["require_key"] = self.require_key
        return doc

    def to_bytes(self):
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode("utf-8")

    @property
    def bundle_id(self):
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @property
    def payload_size(self):
        """Bytes the groups take in the payload's data area."""
        return sum(g.csize for g in self.groups)

    @property
    def installed_size(self):
        return sum(e.size for e in self.entries)

    def group(self, name):
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    def entries_of(self, group_name):
        return sorted((e for e in self.entries if e.group == group_name), key=lambda e: e.offset)

    def files(self):
        return [e for e in self.entries if e.kind == "file"]

    @classmethod
    def from_bytes(cls, data, data_size):
        """Parse and check an index; `data_size` is the size of the payload's data area it describes."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise IntegrityError("bundle index is not valid JSON; the bundle is damaged, copy it again")
        _require(isinstance(doc, dict), "not an object")
        _require(doc.get("format") == FORMAT_VERSION,
                 "format %r, this stub reads format %d" % (doc.get("format"), FORMAT_VERSION))
        for key in ("name", "version", "variant", "arch", "bundler_version"):
            _require(isinstance(doc.get(key), str) and doc[key], "%s is missing" % key)
        _require(_NAME.fullmatch(doc["name"]), "name %r is not a plain name" % doc["name"])
        ep = doc.get("entrypoint")
        _require(isinstance(ep, list) and ep and all(isinstance(a, str) for a in ep), "entrypoint is not a list")
        groups = []
        names = set()
        _require(isinstance(doc.get("groups"), list), "groups is not a list")
        for g in doc["groups"]:
            _require(isinstance(g, dict), "group is not an object")
            _require(isinstance(g.get("name"), str) and g["name"] not in names, "group name missing or repeated")
            for key in ("offset", "csize", "size"):
                _require(_is_int(g.get(key)), "group %r: %s is not a size" % (g["name"], key))
            _require(isinstance(g.get("sha256"), str) and _HEX64.fullmatch(g["sha256"]), "group %r: bad sha256" % g["name"])
            _require(g["offset"] + g["csize"] <= data_size,
                     "group %r ends at %d, past the payload's %d bytes" % (g["name"], g["offset"] + g["csize"], data_size))
            names.add(g["name"])
            groups.append(Group(g["name"], g["offset"], g["csize"], g["size"], g["sha256"]))
        spans = sorted((g.offset, g.offset + g.csize) for g in groups)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            _require(start >= end, "groups overlap")
        entries = []
        paths = set()
        _require(isinstance(doc.get("entries"), list), "entries is not a list")
        for e in doc["entries"]:
            _require(isinstance(e, dict), "entry is not an object")
            path = check_relative(e.get("path"), "entry path")
            _require(path not in paths, "entry %r appears twice" % path)
            paths.add(path)
            _require(e.get("kind") in KINDS, "entry %r: unknown kind %r" % (path, e.get("kind")))
            _require(_is_int(e.get("mode")) and e["mode"] <= 0o777, "entry %r: bad mode" % path)
            _require(_is_int(e.get("size")) and _is_int(e.get("offset")), "entry %r: bad size or offset" % path)
            _require(isinstance(e.get("sha256"), str) and _HEX64.fullmatch(e["sha256"]), "entry %r: bad sha256" % path)
            _require(e.get("group") in names, "entry %r: unknown group %r" % (path, e.get("group")))
            entries.append(Entry(path, e["kind"], e["mode"], e["size"], e["sha256"], e["group"], e["offset"]))
        # The program run after install must be verified content inside the root, never a path of the host.
        _require("{" not in ep[0] and any(e.path == ep[0] and e.kind == "file" for e in entries),
                 "entrypoint %r is not a file of the bundle" % ep[0])
        parents = set()
        for path in paths:
            parts = path.split("/")
            parents.update("/".join(parts[:i]) for i in range(1, len(parts)))
        clash = sorted(paths & parents)
        _require(not clash, "entry %r is both a file and a directory" % (clash[0] if clash else ""))
        for g in groups:
            # Entries must tile their group's stream exactly: no gaps, no overlaps, nothing past its end.
            pos = 0
            for e in sorted((e for e in entries if e.group == g.name), key=lambda e: e.offset):
                _require(e.offset == pos, "entry %r starts at %d, expected %d" % (e.path, e.offset, pos))
                pos += e.size
            _require(pos == g.size, "group %r holds %d bytes, its entries %d" % (g.name, g.size, pos))
        images = doc.get("images", [])
        _require(isinstance(images, list) and all(isinstance(i, dict) for i in images), "images is not a list")
        blobs = set("sha256:" + e.sha256 for e in entries
                    if e.kind == "blob" and e.path == "images/blobs/sha256/" + e.sha256)
        for image in images:
            _check_image(image, blobs)
        require_key = doc.get("require_key")
        _require(require_key is None or isinstance(require_key, str), "require_key is not a string")
        return cls(doc["name"], doc["version"], doc["variant"], doc["arch"], doc["bundler_version"], ep,
                   groups, entries, images, require_key)

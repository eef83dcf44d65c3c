"""The index: the one record of what a bundle holds, stored as two documents (docs/format.md, section 3).

The content index says what a device installs and runs (entries, images, entrypoint, metadata, the stub's code);
its sha256 is the bundle id and it is what a signature covers. The encoding table says how that content is
packed (groups, frames and which entries each holds, parts); the payload header binds it, nothing signs it, so a
repack or a split keeps the id. In memory they are one Index: an entry knows its group and stream offset, filled
in from the table. Both are canonical JSON (sorted keys, no spaces); the rules live in payload/rules.py.
"""

from payload import FORMAT_VERSION, arches, jsondecode, rules, small_sha
from payload.errors import IntegrityError

KINDS = ("file", "blob")
LAYERS_RAW = "raw"  # embedded layers stored uncompressed, under a rewritten manifest (docs/images.md)
LAYERS_EXACT = "exact"  # the registry's blobs byte for byte
LAYER_MODES = (LAYERS_RAW, LAYERS_EXACT)

_INDEX_KEYS = (
    "format",
    "name",
    "version",
    "variant",
    "arch",
    "bundler_version",
    "entrypoint",
    "entries",
    "images",
    "stub_sha256",
)
_INDEX_OPTIONAL = (
    "require_key",
    "description",
    "min_glibc",
    "min_glibc_file",
    "update_repository",
    "pull",
    "update_policy",
)
_TABLE_KEYS = ("format", "groups")
_TABLE_OPTIONAL = ("parts",)
_PART_KEYS = ("name", "size", "sha256")
_GROUP_KEYS = ("name", "frames")
_FRAME_KEYS = ("offset", "csize", "size", "sha256", "entries")
_FRAME_OPTIONAL = ("level",)  # a frame a device encoded again (a delta update): the zstd level it used
_ENTRY_KEYS = ("path", "kind", "mode", "size", "sha256")
_IMAGE_KEYS = ("name", "ref", "platform", "digest", "embedded")
_EMBEDDED_KEYS = ("manifest", "layers", "size")
_PATH_PROBLEMS = {
    rules.EMPTY: "is empty or not a string",
    rules.NUL: "has a NUL, newline or backslash",
    rules.NEWLINE: "has a NUL, newline or backslash",
    rules.BACKSLASH: "has a NUL, newline or backslash",
    rules.ABSOLUTE: "is absolute; paths must be relative to the install root",
    rules.DOTDOT: "has an empty, '.' or '..' component",
    rules.DOT_OR_EMPTY: "has an empty, '.' or '..' component",
    rules.NOT_NORMAL: "is not normalised",
    rules.RESERVED: f"starts with {rules.RESERVED_PREFIX}, a name the installer keeps for itself",
    rules.TOO_LONG: f"is longer than {rules.MAX_PATH_BYTES} bytes",
    rules.TOO_DEEP: f"has more than {rules.MAX_PATH_DEPTH} components",
}


def _require(cond, message, what="bundle index"):
    if not cond:
        raise IntegrityError(f"{what} is invalid: {message}; the bundle is damaged, copy it again")


def _parse_json(data, what):
    """The JSON document `data`, within the limits of docs/format.md 3.7 (checked on the raw bytes first): never
    a RecursionError or a MemoryError, always an IntegrityError."""
    problem = rules.json_size_problem(bytes(data))
    _require(problem is None, problem, what)
    try:
        return jsondecode.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError, MemoryError):
        raise IntegrityError(f"{what} is not valid JSON; the bundle is damaged, copy it again") from None


def _object(value, required, optional, what):
    """Check that `value` is an object with every key of `required` and no key outside required + optional."""
    _require(isinstance(value, dict), f"{what} is not an object")
    unknown = sorted(k for k in value if k not in required and k not in optional)
    _require(not unknown, "{} has the unknown field {!r}".format(what, unknown[0] if unknown else ""))
    missing = [k for k in required if k not in value]
    _require(not missing, "{} has no {!r}".format(what, missing[0] if missing else ""))
    return value


def _check_path(path, what):
    problem = rules.path_problem(path)
    if problem is not None:
        shown = repr(path)
        if len(shown) > 200:  # a hostile path of thousands of bytes: the message stays one readable line
            shown = f"{shown[:96]}...{shown[-96:]} ({len(path)} characters)"
        _require(False, f"{what} {shown} {_PATH_PROBLEMS.get(problem)}")
    return path


class ImageRecord:
    """One container image pinned for the bundle's platform: embedded (its blobs are entries) or pulled at the
    first start by its digest (docs/format.md, section 5)."""

    __slots__ = ("name", "ref", "platform", "digest", "embedded", "manifest", "layers", "size")

    def __init__(self, name, ref, platform, digest, embedded, manifest=None, layers=None, size=None):
        self.name, self.ref, self.platform, self.digest, self.embedded = name, ref, platform, digest, embedded
        self.manifest, self.layers, self.size = manifest, layers, size

    @property
    def archive_name(self):
        """Its archive on the device, in the installed version's images/ directory."""
        return self.name + ".tar"

    def to_json(self):
        doc = {
            "name": self.name,
            "ref": self.ref,
            "platform": self.platform,
            "digest": self.digest,
            "embedded": self.embedded,
        }
        if self.embedded:
            doc.update({"manifest": self.manifest, "layers": self.layers, "size": self.size})
        return doc

    @classmethod
    def from_json(cls, doc, blobs):
        """Check a record of an index; `blobs` are the digests of the index's blob entries."""
        _require(isinstance(doc, dict), "image record is not an object")
        name = doc.get("name")
        _require(rules.is_name(name), f"image name {name!r} is not a plain name")
        embedded = doc.get("embedded")
        _require(isinstance(embedded, bool), f"image {name!r}: embedded is not true or false")
        what = f"image {name!r}"
        _object(doc, _IMAGE_KEYS + (_EMBEDDED_KEYS if embedded else ()), (), what)
        _require(
            isinstance(doc["ref"], str) and rules.is_reference(doc["ref"]),
            "{}: ref {!r} is not an image reference".format(what, doc["ref"]),
        )
        _require(
            rules.is_platform(doc["platform"]),
            "{}: platform {!r} is not os/arch[/variant]".format(what, doc["platform"]),
        )
        _require(rules.is_digest(doc["digest"]), f"{what}: bad digest")
        if not embedded:
            return cls(name, doc["ref"], doc["platform"], doc["digest"], False)
        _require(rules.is_digest(doc["manifest"]), f"{what}: bad manifest digest")
        _require(doc["manifest"] in blobs, "{}: its manifest {} is not an entry".format(what, doc["manifest"]))
        _require(doc["layers"] in LAYER_MODES, "{}: layers {!r} is neither raw nor exact".format(what, doc["layers"]))
        _require(
            doc["layers"] != LAYERS_EXACT or doc["manifest"] == doc["digest"],
            "{}: stored exactly, but its manifest {} is not the pinned {}".format(what, doc["manifest"], doc["digest"]),
        )
        _require(rules.is_size(doc["size"]), f"{what}: bad size")
        return cls(name, doc["ref"], doc["platform"], doc["digest"], True, doc["manifest"], doc["layers"], doc["size"])


class Frame:
    """One zstd frame, decodable on its own: where its compressed bytes lie (`offset`, `csize`: in the data area,
    at file position data_offset + offset; in a build, in its group's frame file), their sha256, what it
    decompresses to (`size` bytes, the group's stream from `start`), and `count`, how many entries it holds. The one
    class for a frame on both sides: the index, the build's compressed groups, a registry's layers
    (docs/format.md, section 4)."""

    __slots__ = ("offset", "csize", "size", "sha256", "count", "start", "number", "group", "level")

    def __init__(self, offset, csize, size, sha256, count=None, start=0, number=1, group=None, level=None):
        self.offset, self.csize, self.size, self.sha256, self.count = offset, csize, size, sha256, count
        # Set only for a frame a device encoded again after a delta (payload/delta.py): the zstd level it used.
        self.level = level
        # set by the group: in its stream, 1, 2, ... in its list, and its name
        self.start, self.number, self.group = start, number, group

    @property
    def end(self):
        """Where its bytes end in the group's stream."""
        return self.start + self.size

    def _key(self):
        return (self.offset, self.csize, self.size, self.sha256, self.count, self.level)

    def __eq__(self, other):
        return isinstance(other, Frame) and self._key() == other._key()

    __hash__ = None

    def __repr__(self):
        return f"Frame({self.group!r}, {self.offset}, {self.csize}, {self.size}, {self.sha256[:12]})"


class Group:
    """Entries stored as solid zstd: their bytes concatenated in stream order, cut at entry boundaries into one or
    more frames that lie back to back in the data area."""

    __slots__ = ("name", "frames")

    def __init__(self, name, frames):
        self.name, self.frames = name, list(frames)
        start = 0
        for number, frame in enumerate(self.frames, 1):
            frame.start, frame.number, frame.group = start, number, name
            start += frame.size

    @property
    def offset(self):
        return self.frames[0].offset if self.frames else 0

    @property
    def csize(self):
        return sum(f.csize for f in self.frames)

    @property
    def size(self):
        return sum(f.size for f in self.frames)

    def label(self, frame):
        """How an error names `frame`: the group, and the frame when the group has more than one."""
        if len(self.frames) == 1:
            return f"group {self.name!r}"
        return f"group {self.name!r} frame {frame.number} of {len(self.frames)}"

    def frame_of(self, entry):
        """The frame holding `entry`'s bytes (an empty entry: the frame its offset falls in, else the last one),
        or None when its bytes cross a frame boundary or lie past the group's end."""
        for frame in self.frames:
            if frame.start <= entry.offset < frame.end or frame is self.frames[-1] and entry.offset == frame.end:
                return frame if entry.offset + entry.size <= frame.end else None
        return None

    def split_entries(self, entries):
        """[(frame, its entries in stream order)] for every frame; raises IntegrityError naming an entry that no
        single frame holds."""
        by_frame = dict((id(f), []) for f in self.frames)
        for entry in sorted(entries, key=lambda e: e.offset):
            frame = self.frame_of(entry)
            if frame is None:
                raise IntegrityError(
                    f"bundle index is invalid: entry {entry.path!r} (bytes {entry.offset} to "
                    f"{entry.offset + entry.size} of group {self.name!r}) is not inside one of its frames; the bundle "
                    "is damaged, copy it again"
                )
            by_frame[id(frame)].append(entry)
        return [(f, by_frame[id(f)]) for f in self.frames]

    def to_json(self, entries, position):
        """Its record in the encoding table; `entries` its entries, `position` maps id(entry) to its place in the
        content index."""
        frames = []
        for f, held in self.split_entries(entries):
            doc = {
                "offset": f.offset,
                "csize": f.csize,
                "size": f.size,
                "sha256": f.sha256,
                "entries": [position[id(e)] for e in held],
            }
            if f.level is not None:
                doc["level"] = f.level
            frames.append(doc)
        return {"name": self.name, "frames": frames}


class Entry:
    """One file (or image blob) and where its bytes sit inside its group's decompressed stream."""

    __slots__ = ("path", "kind", "mode", "size", "sha256", "group", "offset")

    def __init__(self, path, kind, mode, size, sha256, group=None, offset=None):
        self.path, self.kind, self.mode, self.size = path, kind, mode, size
        self.sha256, self.group, self.offset = sha256, group, offset  # from the encoding table

    def to_json(self):
        """Its record in the content index: what is installed, never where it is stored."""
        return {"path": self.path, "kind": self.kind, "mode": self.mode, "size": self.size, "sha256": self.sha256}


class Part:
    """One file of a split bundle's data area (payload/parts.py): NAME.part001, ... beside the executable."""

    __slots__ = ("name", "size", "sha256")

    def __init__(self, name, size, sha256):
        self.name, self.size, self.sha256 = name, size, sha256

    def to_json(self):
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


def _check_part_name(name):
    _require(
        isinstance(name, str)
        and name
        and "/" not in name
        and "\x00" not in name
        and not name.startswith(".")
        and len(name.encode("utf-8")) <= 255,
        f"part name {name!r} is not a plain file name",
    )


class Index:
    """What a bundle holds: identity, entrypoint, groups, entries, images, and the parts of a split bundle."""

    def __init__(
        self,
        name,
        version,
        variant,
        arch,
        bundler_version,
        entrypoint,
        groups,
        entries,
        images=(),
        require_key=None,
        stub_sha256=None,
        description=None,
        min_glibc=None,
        parts=(),
        update_repository=None,
        min_glibc_file=None,
        pull=rules.PULL_BACKGROUND,
        update_policy=None,
    ):
        self.name = name
        self.version = version
        self.variant = variant
        self.arch = arch
        self.bundler_version = bundler_version
        self.entrypoint = list(entrypoint)
        self.groups = list(groups)
        self.entries = list(entries)
        self.images = list(images)
        self.require_key = require_key
        self.stub_sha256 = stub_sha256  # payload/outside.py: the stub's code, the same in every bundle of one stub
        self.description = description
        self.min_glibc = min_glibc  # the glibc the bundle needs at least, "MAJOR.MINOR" (docs/devices.md)
        self.min_glibc_file = min_glibc_file  # the file that needs it; None when the stub does
        self.parts = list(parts)
        self.update_repository = update_repository  # where --bundle-update looks by default (docs/fleet.md)
        self.pull = pull  # when the device pulls the images left out (docs/images.md)
        # The manifest's [update] settings that differ from their default (rules.UPDATE_DEFAULTS; docs/fleet.md)
        self.update_policy = dict(update_policy or {})

    def with_parts(self, parts):
        """This index for the data area cut into `parts` (none: unsplit): the same content index."""
        return self.with_groups(self.groups, None, parts)

    def with_groups(self, groups, placement=None, parts=()):
        """This index with its content packed as `groups` (and `parts`): the same content index, so the same bundle
        id and signature. `placement` maps an entry's path to its (group name, offset); None keeps them."""

        def where(e):
            return (e.group, e.offset) if placement is None else placement[e.path]

        entries = [Entry(e.path, e.kind, e.mode, e.size, e.sha256, *where(e)) for e in self.entries]
        return Index(
            self.name,
            self.version,
            self.variant,
            self.arch,
            self.bundler_version,
            self.entrypoint,
            groups,
            entries,
            self.images,
            self.require_key,
            self.stub_sha256,
            self.description,
            self.min_glibc,
            parts,
            self.update_repository,
            self.min_glibc_file,
            self.pull,
            self.update_policy,
        )

    def to_json(self):
        doc = {
            "format": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "variant": self.variant,
            "arch": self.arch,
            "bundler_version": self.bundler_version,
            "entrypoint": self.entrypoint,
            "entries": [e.to_json() for e in self.entries],
            "images": [i.to_json() for i in self.images],
            "stub_sha256": self.stub_sha256,
        }
        if self.require_key:
            doc["require_key"] = self.require_key
        if self.description:
            doc["description"] = self.description
        if self.min_glibc:
            doc["min_glibc"] = self.min_glibc
        if self.min_glibc_file:
            doc["min_glibc_file"] = self.min_glibc_file
        if self.update_repository:
            doc["update_repository"] = self.update_repository
        if self.pull != rules.PULL_BACKGROUND:  # the default is left out, so older indexes keep their bytes
            doc["pull"] = self.pull
        if self.update_policy:
            doc["update_policy"] = self.update_policy
        return doc

    def table_json(self):
        """The encoding table: groups, their frames and the entries each holds, parts."""
        position = dict((id(e), n) for n, e in enumerate(self.entries))
        doc = {
            "format": FORMAT_VERSION,
            "groups": [g.to_json(self.entries_of(g.name), position) for g in self.groups],
        }
        if self.parts:
            doc["parts"] = [p.to_json() for p in self.parts]
        return doc

    def to_bytes(self):
        """The content index as stored: its sha256 is the bundle id, a signature covers it."""
        return _canonical(self.to_json())

    def table_bytes(self):
        """The encoding table as stored."""
        return _canonical(self.table_json())

    @property
    def bundle_id(self):
        return small_sha.sha256(self.to_bytes()).hexdigest()

    @property
    def payload_size(self):
        """Bytes the groups take in the payload's data area."""
        return sum(g.csize for g in self.groups)

    def frames(self):
        """Every (group, frame) of the bundle, in the order of `groups`: the frames lie back to back in the data
        area in this order, each at data_offset + frame.offset of the file."""
        return [(g, f) for g in self.groups for f in g.frames]

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
    def from_bytes(cls, data, table, data_size):
        """Parse and check a content index and its encoding table; `data_size` is the size of the payload's data
        area the table describes. Both within the limits of docs/format.md 3.7, in time linear in their size."""
        doc = _parse_json(data, "bundle index")
        _require(isinstance(doc, dict), "not an object")
        _require(
            doc.get("format") == FORMAT_VERSION,
            f"format {doc.get('format')!r}, this stub reads format {FORMAT_VERSION}",
        )
        for key in ("name", "version", "variant", "arch", "bundler_version"):
            _require(isinstance(doc.get(key), str) and doc[key], f"{key} is missing")
        _object(doc, _INDEX_KEYS, _INDEX_OPTIONAL, "the index")
        _require(rules.is_name(doc["name"]), "name {!r} is not a plain name".format(doc["name"]))
        _require(rules.is_version(doc["version"]), "version {!r} is not a version".format(doc["version"]))
        _require(rules.is_name(doc["variant"]), "variant {!r} is not a plain name".format(doc["variant"]))
        _require(
            arches.get(doc["arch"]) is not None,
            "arch {!r} is not one of {}".format(doc["arch"], ", ".join(arches.NAMES)),
        )
        ep = doc["entrypoint"]
        _require(isinstance(ep, list) and ep and all(isinstance(a, str) for a in ep), "entrypoint is not a list")
        unknown = [p for a in ep[1:] for p in rules.unknown_placeholders(a)]
        _require(not unknown, "entrypoint has the unknown placeholder %s" % (unknown[0] if unknown else ""))
        _require(isinstance(doc["entries"], list), "entries is not a list")
        _require(
            len(doc["entries"]) <= rules.MAX_ENTRIES,
            f"{len(doc['entries'])} entries, more than the {rules.MAX_ENTRIES} allowed",
        )
        entries = []
        paths = set()
        for e in doc["entries"]:
            _require(isinstance(e, dict), "entry is not an object")
            path = _check_path(e.get("path"), "entry path")
            _require(path not in paths, f"entry {path!r} appears twice")
            paths.add(path)
            _object(e, _ENTRY_KEYS, (), f"entry {path!r}")
            _require(e["kind"] in KINDS, "entry {!r}: unknown kind {!r}".format(path, e["kind"]))
            _require(
                rules.is_mode(e["mode"]),
                f"entry {path!r}: bad mode {e['mode']!r} (permission bits only, and {rules.MODE_RULE})",
            )
            _require(rules.is_size(e["size"]), f"entry {path!r}: bad size")
            _require(rules.is_sha256(e["sha256"]), f"entry {path!r}: bad sha256")
            _require(
                e["kind"] != "blob" or path == rules.blob_path("sha256:" + e["sha256"]),
                "blob entry {!r} is not at {}".format(path, rules.blob_path("sha256:" + e["sha256"])),
            )
            entries.append(Entry(path, e["kind"], e["mode"], e["size"], e["sha256"]))
        # The program run after install must be verified content inside the root, never a path of the host.
        _require(
            "{" not in ep[0] and any(e.path == ep[0] and e.kind == "file" for e in entries),
            f"entrypoint {ep[0]!r} is not a file of the bundle",
        )
        clash = rules.first_clash(paths)
        _require(clash is None, f"entry {clash!r} is both a file and a directory")
        _require(isinstance(doc["images"], list), "images is not a list")
        blobs = set("sha256:" + e.sha256 for e in entries if e.kind == "blob")
        images = [ImageRecord.from_json(i, blobs) for i in doc["images"]]
        image_names = [i.name for i in images]
        _require(len(set(image_names)) == len(image_names), "an image name appears twice")
        require_key = doc.get("require_key")
        _require(require_key is None or rules.is_key_id(require_key), "require_key is not an ed25519 key")
        _require(rules.is_sha256(doc["stub_sha256"]), "stub_sha256 is not a sha256")
        description = doc.get("description")
        _require(description is None or isinstance(description, str), "description is not a string")
        min_glibc = doc.get("min_glibc")
        _require(
            min_glibc is None or rules.is_glibc_version(min_glibc),
            f"min_glibc {min_glibc!r} is not a glibc version like 2.31",
        )
        min_glibc_file = doc.get("min_glibc_file")
        _require(
            min_glibc_file is None or min_glibc and any(e.path == min_glibc_file and e.kind == "file" for e in entries),
            f"min_glibc_file {min_glibc_file!r} is not a file of the bundle, or min_glibc is missing",
        )
        update_repository = doc.get("update_repository")
        _require(
            update_repository is None or rules.is_update_repository(update_repository),
            f"update_repository {update_repository!r} is not REGISTRY/REPO[:TAG] (no digest)",
        )
        # Present only when not the default, so "background" written out is refused like any other value.
        pull = doc.get("pull")
        _require(pull in (None, rules.PULL_BEFORE_START), f"pull {pull!r} is not {rules.PULL_BEFORE_START!r}")
        update_policy = _parse_update_policy(doc.get("update_policy"), entries)
        groups, parts = _parse_table(table, entries, data_size)
        return cls(
            doc["name"],
            doc["version"],
            doc["variant"],
            doc["arch"],
            doc["bundler_version"],
            ep,
            groups,
            entries,
            images,
            require_key,
            doc["stub_sha256"],
            description,
            min_glibc,
            parts,
            update_repository,
            min_glibc_file,
            pull or rules.PULL_BACKGROUND,
            update_policy,
        )


def _parse_update_policy(policy, entries):
    """The [update] settings an index records: only known ones, each valid and not at its default (a writer leaves
    defaults out, so one index has one spelling), and a health command that is a file of the bundle."""
    if policy is None:
        return {}
    _require(isinstance(policy, dict) and policy, "update_policy is not a non-empty object")
    for key, value in policy.items():
        problem = rules.update_setting_problem(key, value)
        _require(problem is None, f"update_policy {key} {problem}")
        _require(value != rules.UPDATE_DEFAULTS[key], f"update_policy {key} is its default, which is left out")
    health = policy.get("health")
    _require(
        health is None or any(e.path == health[0] and e.kind == "file" for e in entries),
        f"update_policy health {health[0] if health else ''!r} is not a file of the bundle",
    )
    return policy


def _canonical(doc):
    import json  # not at the top: an installed start reads an index, it never writes one

    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


_TABLE = "encoding table"


def _parse_table(data, entries, data_size):
    """The groups and parts of the encoding table `data`, and each entry's group and stream offset set from it:
    every entry in exactly one frame, each frame's size the sum of its entries' signed sizes."""
    doc = _parse_json(data, _TABLE)
    _require(isinstance(doc, dict), "not an object", _TABLE)
    _object(doc, _TABLE_KEYS, _TABLE_OPTIONAL, "the encoding table")
    _require(doc["format"] == FORMAT_VERSION, "format {!r}".format(doc["format"]), _TABLE)
    _require(isinstance(doc["groups"], list), "groups is not a list", _TABLE)
    groups, names = [], set()
    for g in doc["groups"]:
        _require(isinstance(g, dict), "group is not an object", _TABLE)
        _require(rules.is_name(g.get("name")) and g["name"] not in names, "group name missing or repeated", _TABLE)
        names.add(g["name"])
        groups.append(_parse_group(_object(g, _GROUP_KEYS, (), "group {!r}".format(g["name"])), entries, data_size))
    spans = sorted((g.offset, g.offset + g.csize) for g in groups)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        _require(start >= end, "groups overlap", _TABLE)
    missing = [e.path for e in entries if e.group is None]
    _require(not missing, "entry %r is in no frame" % (missing[0] if missing else ""), _TABLE)
    return groups, _parse_parts(doc, data_size)


def _parse_group(g, entries, data_size):
    """A group's frames: at least one, back to back, inside the data area; empty only as a group's one frame."""
    name, frames = g["name"], g["frames"]
    _require(isinstance(frames, list) and frames, f"group {name!r}: frames is not a non-empty list", _TABLE)
    parsed, stream = [], 0
    for number, f in enumerate(frames, 1):
        what = f"group {name!r} frame {number}"
        _object(f, _FRAME_KEYS, _FRAME_OPTIONAL, what)
        for key in ("offset", "csize", "size"):
            _require(rules.is_size(f[key]), f"{what}: {key} is not a size", _TABLE)
        _require(rules.is_sha256(f["sha256"]), f"{what}: bad sha256", _TABLE)
        _require(
            f["offset"] + f["csize"] <= data_size,
            f"{what} ends at {f['offset'] + f['csize']}, past the payload's {data_size} bytes",
            _TABLE,
        )
        _require(
            not parsed or f["offset"] == parsed[-1].offset + parsed[-1].csize,
            f"{what} does not start where frame {number - 1} ends",
            _TABLE,
        )
        _require(f["size"] > 0 or len(frames) == 1, f"{what} is empty; only a group's one frame may be", _TABLE)
        _require(
            f["csize"] <= rules.max_frame_csize(f["size"]),
            f"{what} takes {f['csize']} bytes for {f['size']}, more than zstd ever writes",
            _TABLE,
        )
        held = f["entries"]
        _require(isinstance(held, list), f"{what}: entries is not a list", _TABLE)
        start = stream
        for n in held:
            _require(rules.is_size(n) and n < len(entries), f"{what}: entry {n!r} is not in the index", _TABLE)
            entry = entries[n]
            _require(entry.group is None, f"{what}: entry {entry.path!r} is in two frames", _TABLE)
            entry.group, entry.offset = name, stream
            stream += entry.size
        _require(
            stream - start == f["size"],
            f"{what} holds {f['size']} bytes, its entries {stream - start}",
            _TABLE,
        )
        level = f.get("level")
        _require(
            level is None or rules.is_size(level) and 1 <= level <= 22, f"{what}: level is not a zstd level", _TABLE
        )
        parsed.append(Frame(f["offset"], f["csize"], f["size"], f["sha256"], len(held), level=level))
    return Group(name, parsed)


def _parse_parts(doc, data_size):
    if "parts" not in doc:
        return []
    parts, names = [], set()
    _require(isinstance(doc["parts"], list) and doc["parts"], "parts is not a non-empty list", _TABLE)
    for p in doc["parts"]:
        _require(isinstance(p, dict), "part is not an object", _TABLE)
        _check_part_name(p.get("name"))
        _object(p, _PART_KEYS, (), "part {!r}".format(p["name"]))
        _require(p["name"] not in names, "part {!r} appears twice".format(p["name"]), _TABLE)
        names.add(p["name"])
        _require(
            rules.is_size(p["size"]) and p["size"] > 0,
            "part {!r}: size is not a positive size".format(p["name"]),
            _TABLE,
        )
        _require(rules.is_sha256(p["sha256"]), "part {!r}: bad sha256".format(p["name"]), _TABLE)
        parts.append(Part(p["name"], p["size"], p["sha256"]))
    total = sum(p.size for p in parts)
    _require(total == data_size, f"the parts hold {total} bytes, the data area {data_size}", _TABLE)
    return parts

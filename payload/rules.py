"""The rules of the format, written once for both sides (docs/format.md, section 3): names, versions, paths,
modes, placeholders, sha256s and digests. The device applies them as they are (payload/index.py); the manifest
and lock readers apply the same ones and add line numbers and hints on top. Patterns match whole strings."""

import posixpath

# Written as character sets, not regular expressions: an installed start checks its index with these, and
# importing re (with enum, functools and collections) and compiling the patterns is a sizeable share of a start
# under qemu (docs/benchmarks.md). tests/payload/test_rules.py holds each rule's regular expression as the spec.
LOWER = "abcdefghijklmnopqrstuvwxyz"
LETTERS = LOWER + LOWER.upper()
DIGITS = "0123456789"
_HEX = DIGITS + "abcdef"
_BASE64 = LETTERS + DIGITS + "+/"
_PLATFORM_PART = LOWER + DIGITS + "_.-"
_WORD = LETTERS + DIGITS + "_"
_LOWER_DIGITS = LOWER + DIGITS
_ALNUM = LETTERS + DIGITS

# Names become paths on the device (/var/lib/NAME, images/NAME.tar) and parts of file names on the build host.
NAME_RULE = "use lower-case letters, digits and '-', starting with a letter"
VERSION_RULE = "use letters, digits and '.+_-', starting with a letter or digit"
MAX_MODE = 0o777  # no setuid, setgid or sticky bit
# An installed file another user could rewrite would run with the rights of whoever starts the bundle (root, on
# most devices): no mode may let the group or other users write.
WRITABLE_BY_OTHERS = 0o022
DEFAULT_MODE = 0o644
DIR_MODE = 0o755  # every directory of an installed version, whatever the umask
MODE_RULE = "an installed file must not be writable by its group or other users"
PLACEHOLDERS = ("{root}", "{images}", "{data}")
DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")
IMAGES_DIR = "images"  # under an installed version: one archive per image, and the blobs while installing
LAYOUT_BLOBS = "blobs"  # where an OCI image layout, and IMAGES_DIR while installing, keep blobs by digest
# When a device pulls the images a variant left out: after the runtime has started (the default), or before.
PULL_BACKGROUND = "background"
PULL_BEFORE_START = "before-start"
PULL_MODES = (PULL_BACKGROUND, PULL_BEFORE_START)


def _spelled(value, first, rest):
    """Whether `value` is a str of one character of `first` followed by any number of characters of `rest`."""
    return isinstance(value, str) and value[:1] != "" and value[0] in first and not value[1:].strip(rest)


def _only(value, chars, length=None):
    """Whether `value` is a non-empty str of `chars` only (of exactly `length` characters, when given)."""
    return (
        isinstance(value, str) and value != "" and (length is None or len(value) == length) and not value.strip(chars)
    )


def is_name(value):  # [a-z][a-z0-9-]*
    return _spelled(value, LOWER, LOWER + DIGITS + "-")


def is_version(value):  # [A-Za-z0-9][A-Za-z0-9.+_-]*
    return _spelled(value, LETTERS + DIGITS, LETTERS + DIGITS + ".+_-")


def is_sha256(value):  # [0-9a-f]{64}
    return _only(value, _HEX, 64)


def is_digest(value):  # sha256:[0-9a-f]{64}
    return isinstance(value, str) and value.startswith("sha256:") and is_sha256(value[7:])


def is_key_id(value):  # ed25519:[A-Za-z0-9+/]{43}=, a 32-byte public key in an index (require_key)
    return (
        isinstance(value, str)
        and value.startswith("ed25519:")
        and value.endswith("=")
        and _only(value[8:-1], _BASE64, 43)
    )


def glibc_version(value):
    """'2.31' -> (2, 31), None when `value` is not MAJOR.MINOR of 1-3 digits each: min_glibc in an index and a
    manifest."""
    if not isinstance(value, str):
        return None
    major, dot, minor = value.partition(".")
    if dot and all(1 <= len(n) <= 3 and not n.strip(DIGITS) for n in (major, minor)):
        return int(major), int(minor)
    return None


def is_glibc_version(value):
    return glibc_version(value) is not None


def is_platform(value):  # os/arch or os/arch/variant, each part [a-z0-9_.-]+
    if not isinstance(value, str):
        return False
    parts = value.split("/")
    return len(parts) in (2, 3) and all(part and not part.strip(_PLATFORM_PART) for part in parts)


def _is_component(text):  # [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    i = 0
    while i < len(text):
        j = i
        while j < len(text) and text[j] in _LOWER_DIGITS:
            j += 1
        if j == i:
            return False
        if j == len(text):
            return True
        k = j
        while k < len(text) and text[k] in "._-":
            k += 1
        separator = text[j:k]
        if not (separator in (".", "_", "__") or not separator.strip("-")):
            return False
        i = k
    return False  # empty, or ends with a separator


def is_oci_digest(value):  # sha256:[0-9a-f]{64} or sha512:[0-9a-f]{128}, as registries name blobs
    return is_digest(value) or (isinstance(value, str) and value[:7] == "sha512:" and _only(value[7:], _HEX, 128))


def is_registry_host(text):  # host(.host)*(:port)? or [ipv6](:port)?, host [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?
    if not isinstance(text, str):
        return False
    host = text
    if text.startswith("["):
        close = text.find("]")
        if close < 2 or not _only(text[1:close], _HEX + "ABCDEF:"):
            return False
        rest = text[close + 1 :]
        return rest == "" or (rest[:1] == ":" and _only(rest[1:], DIGITS))
    if ":" in text:
        host, _, port = text.rpartition(":")
        if not _only(port, DIGITS):
            return False
    for label in host.split("."):
        if not label or not _only(label, _ALNUM + "-") or label[0] == "-" or label[-1] == "-":
            return False
    return True


def split_reference(text):
    """(domain or None, path, tag or None, digest or None) when `text` is an image reference by the distribution
    grammar, else None. The domain is the first path component when it looks like a host (a dot, a port, or
    `localhost`), as docker decides; payload/oci/reference.py normalises the rest."""
    if not isinstance(text, str) or not text:
        return None
    rest, digest, tag = text, None, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not is_oci_digest(digest):
            return None
    slash, colon = rest.rfind("/"), rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _spelled(tag, _WORD, _WORD + ".-") or len(tag) > 128:
            return None
    first, sep, remainder = rest.partition("/")
    domain = None
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not is_registry_host(first):
            return None
        domain, rest = first, remainder
    hub = domain is None or domain.lower() in DOCKER_HUB_ALIASES
    length = len(rest) + (len("library/") if hub and "/" not in rest else 0)  # as normalised: library/busybox
    if length > 255 or not all(_is_component(c) for c in rest.split("/")):
        return None
    return domain, rest, tag, digest


def is_reference(value):
    return split_reference(value) is not None


def is_update_repository(value):
    """An image reference with a tag or none (latest), never a digest: where --bundle-update looks by default."""
    return isinstance(value, str) and "@" not in value and is_reference(value)


# The manifest's [update] settings a device acts on after an update (docs/fleet.md, "Probation"), with their
# defaults; the index records those that differ (docs/format.md, `update_policy`).
UPDATE_DEFAULTS = {"health": None, "health_delay": 10, "health_timeout": 60, "probation_starts": 3, "keep": 2}
UPDATE_POLICY_KEYS = tuple(UPDATE_DEFAULTS)


def update_setting_problem(key, value):
    """What is wrong with one [update] setting (None when it holds): `health` a non-empty list of strings whose
    first is a path inside the bundle, `health_delay` seconds >= 0, `health_timeout` seconds > 0,
    `probation_starts` and `keep` whole numbers >= 1."""
    if key == "health":
        if not isinstance(value, list) or not value or not all(isinstance(a, str) and a for a in value):
            return "must be a non-empty list of strings, the first a file of the bundle"
        return None if path_problem(value[0]) is None else "must start with a file of the bundle (a relative path)"
    if key in ("health_delay", "health_timeout"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 86400 * 366:
            return "must be a number of seconds"
        return "must be more than 0 seconds" if key == "health_timeout" and value == 0 else None
    if key in ("probation_starts", "keep"):
        return None if is_size(value) and 1 <= value <= 1000 else "must be a whole number from 1 to 1000"
    return "is not an [update] setting"


def update_setting(policy, key):
    """One [update] setting of an index's `update_policy` (a dict of those not at their default)."""
    return (policy or {}).get(key, UPDATE_DEFAULTS[key])


def is_size(value):
    """A JSON integer >= 0 (never a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_mode(value):
    """Permission bits an installed file may have: no setuid, setgid or sticky bit, writable by its owner only."""
    return is_size(value) and value <= MAX_MODE and not value & WRITABLE_BY_OTHERS


def parse_mode(text):
    """The permission bits a manifest's octal string spells ("0755" or "755" -> 0o755), or None when it is not
    one; is_mode() then says whether a bundle may hold them."""
    if isinstance(text, str) and (_only(text, "01234567", 3) or (text[:1] == "0" and _only(text, "01234567", 4))):
        return int(text, 8)
    return None


def placeholders(arg):
    """The `{word}`s in an entrypoint item, left to right (a word: a letter or '_', then letters, digits, '_');
    other braces ({}, {"a": 1}) are plain text."""
    found = []
    start = arg.find("{")
    while start != -1:
        end = arg.find("}", start + 1)
        if end == -1:
            break
        if _spelled(arg[start + 1 : end], LETTERS + "_", _WORD):
            found.append(arg[start : end + 1])
            start = arg.find("{", end + 1)
        else:
            start = arg.find("{", start + 1)
    return found


def unknown_placeholders(arg):
    """The `{word}`s in an entrypoint item that the device does not replace."""
    return [p for p in placeholders(arg) if p not in PLACEHOLDERS]


def layout_blob_path(digest):
    """Where a blob sits in an OCI image layout: blobs/<algorithm>/<hex>."""
    algorithm, _, encoded = digest.partition(":")
    return f"{LAYOUT_BLOBS}/{algorithm}/{encoded}"


def blob_path(digest):
    """An image blob's entry path, where it sits under the installed version: images/blobs/sha256/<hex>."""
    return IMAGES_DIR + "/" + layout_blob_path(digest)


# Limits of an index (docs/format.md 3.7): parsing stays linear and bounded on a small device, and `bundler make`
# refuses what a device would. JSON containers and values are counted on the raw bytes, before anything is built.
MAX_ENTRIES = 100_000
MAX_PATH_BYTES = 4096
MAX_PATH_DEPTH = 128
MAX_NESTING = 8
MAX_CONTAINERS = 4 * MAX_ENTRIES + 64
MAX_VALUES = 16 * MAX_ENTRIES + 64


def max_frame_csize(size):
    """The most compressed bytes a zstd frame of `size` decompressed bytes may take: above the worst zstd writes
    (stored blocks: 3 bytes per 128 KiB, and a frame header), so a frame's stored size is bounded by the signed sizes
    of its entries, never by the unsigned encoding table alone."""
    return size + (size >> 7) + 4096


def json_size_problem(data):
    """None when the raw JSON `data` (bytes) is within the limits above, else what is wrong; linear, and builds
    nothing as large as `data` but the copies of it bytes methods make."""
    containers = data.count(b"{") + data.count(b"[")
    if containers > MAX_CONTAINERS:
        return f"{containers} objects and arrays, more than the {MAX_CONTAINERS} allowed"
    values = data.count(b",")
    if values > MAX_VALUES:
        return f"{values} values, more than the {MAX_VALUES} allowed"
    # Strings out (escaped backslashes, then escaped quotes, then everything between quotes), brackets kept.
    bare = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    depth = deepest = 0
    for piece in bare.split(b'"')[::2]:
        for byte in piece:
            if byte in _OPENERS:
                depth += 1
                if depth > deepest:
                    deepest = depth
                    if deepest > MAX_NESTING:
                        return f"nested more than {MAX_NESTING} levels deep"
            else:
                depth -= 1
    return None


_OPENERS = b"{["
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'{}[]"')

# What path_problem() returns: each kind of bad path, so that each side can word it (and hint) its own way.
EMPTY, NUL, NEWLINE, BACKSLASH, ABSOLUTE, DOTDOT, DOT_OR_EMPTY, NOT_NORMAL, RESERVED, TOO_LONG, TOO_DEEP = (
    "empty",
    "NUL",
    "newline",
    "backslash",
    "absolute",
    "dotdot",
    "dot-or-empty",
    "not-normalised",
    "reserved",
    "too-long",
    "too-deep",
)
# Top-level names the installer keeps for its own records in a version dir (.bundle-installed, .bundle-index.json).
RESERVED_PREFIX = ".bundle-"
# The directory `bundler make` writes its own entries to (an ordinary entry for the device: it installs and verifies
# it like any file); a manifest may not name a path under it.
BUNDLER_DIR = ".bundle"
SBOM_FORMATS = ("spdx", "cyclonedx")
SBOM_PATHS = {"spdx": BUNDLER_DIR + "/sbom.spdx.json", "cyclonedx": BUNDLER_DIR + "/sbom.cdx.json"}
SBOM_GROUP = "bundle-sbom"  # the SBOM's own group: it changes with every release, so no other group changes with it


def is_bundler_path(path):
    """Whether `path` lies under BUNDLER_DIR, where only `bundler make` writes."""
    return isinstance(path, str) and path.split("/", 1)[0] == BUNDLER_DIR


def path_problem(path):
    """None when `path` may name a file under the installed root: relative, POSIX, normalised, inside the
    root; else which rule it breaks (one of the kinds above)."""
    if not isinstance(path, str) or not path:
        return EMPTY
    if "\x00" in path:
        return NUL
    if "\n" in path:
        return NEWLINE
    if "\\" in path:
        return BACKSLASH
    if path.startswith("/"):
        return ABSOLUTE
    if len(path) > MAX_PATH_BYTES or len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return TOO_LONG
    if path.count("/") >= MAX_PATH_DEPTH:
        return TOO_DEEP
    parts = path.split("/")
    if ".." in parts:
        return DOTDOT
    if "" in parts or "." in parts:
        return DOT_OR_EMPTY
    if posixpath.normpath(path) != path:
        return NOT_NORMAL
    if parts[0].startswith(RESERVED_PREFIX):
        return RESERVED
    return None


def first_clash(paths):
    """A path of `paths` that is also a directory of another one, or None; linear after a sort, however deep the
    paths: with '/' read as the lowest character, a directory's paths follow it at once in sorted order."""
    keys = sorted(p.replace("/", "\x00") for p in paths)
    for here, after in zip(keys, keys[1:]):
        if after.startswith(here + "\x00"):
            return here.replace("\x00", "/")
    return None


def parents(path):
    """The directories a relative path lies under: 'a/b/c' -> ['a', 'a/b']."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]

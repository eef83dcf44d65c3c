"""The rules of the format, written once for both sides (docs/format.md, section 3): names, versions, paths,
modes, placeholders, sha256s and digests. The device applies them as they are (payload/index.py); the manifest
and lock readers apply the same ones and add line numbers and hints on top. Patterns match whole strings."""

import posixpath
import re

# Names become paths on the device (/var/lib/NAME, images/NAME.tar) and parts of file names on the build host.
NAME = re.compile(r"[a-z][a-z0-9-]*")
NAME_RULE = "use lower-case letters, digits and '-', starting with a letter"
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]*")
VERSION_RULE = "use letters, digits and '.+_-', starting with a letter or digit"
SHA256 = re.compile(r"[0-9a-f]{64}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
KEY_ID = re.compile(r"ed25519:[A-Za-z0-9+/]{43}=")  # a 32-byte public key in an index (require_key)
GLIBC_VERSION = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})")  # "2.31": min_glibc in an index and a manifest
PLATFORM = re.compile(r"[a-z0-9_.-]+/[a-z0-9_.-]+(/[a-z0-9_.-]+)?")
MODE_TEXT = re.compile(r"0?[0-7]{3}")  # how a manifest writes a mode: "0755" or "755"
MAX_MODE = 0o777  # no setuid, setgid or sticky bit
DEFAULT_MODE = 0o644
PLACEHOLDERS = ("{root}", "{images}", "{data}")
PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")  # `{word}`: other braces ({}, {"a": 1}) are plain text
IMAGES_DIR = "images"  # under an installed version: one archive per image, and the blobs while installing
LAYOUT_BLOBS = "blobs"  # where an OCI image layout, and IMAGES_DIR while installing, keep blobs by digest


def _fullmatch(pattern, value):
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def is_name(value):
    return _fullmatch(NAME, value)


def is_version(value):
    return _fullmatch(VERSION, value)


def is_sha256(value):
    return _fullmatch(SHA256, value)


def is_digest(value):
    return _fullmatch(DIGEST, value)


def is_key_id(value):
    return _fullmatch(KEY_ID, value)


def is_glibc_version(value):
    return _fullmatch(GLIBC_VERSION, value)


def is_platform(value):
    return _fullmatch(PLATFORM, value)


def is_update_repository(value):
    """An image reference with a tag or none (latest), never a digest: where --bundle-update looks by default."""
    from .errors import UsageError
    from .oci.reference import parse_reference

    if not isinstance(value, str) or "@" in value:
        return False
    try:
        parse_reference(value)
    except UsageError:
        return False
    return True


def is_size(value):
    """A JSON integer >= 0 (never a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_mode(value):
    return is_size(value) and value <= MAX_MODE


def parse_mode(text):
    """The mode a manifest's octal string gives ("0755" -> 0o755), or None when it is not one."""
    return int(text, 8) if _fullmatch(MODE_TEXT, text) else None


def unknown_placeholders(arg):
    """The `{word}`s in an entrypoint item that the device does not replace."""
    return [p for p in PLACEHOLDER.findall(arg) if p not in PLACEHOLDERS]


def layout_blob_path(digest):
    """Where a blob sits in an OCI image layout: blobs/<algorithm>/<hex>."""
    algorithm, _, encoded = digest.partition(":")
    return "%s/%s/%s" % (LAYOUT_BLOBS, algorithm, encoded)


def blob_path(digest):
    """An image blob's entry path, where it sits under the installed version: images/blobs/sha256/<hex>."""
    return IMAGES_DIR + "/" + layout_blob_path(digest)


# What path_problem() returns: each kind of bad path, so that each side can word it (and hint) its own way.
EMPTY, NUL, NEWLINE, BACKSLASH, ABSOLUTE, DOTDOT, DOT_OR_EMPTY, NOT_NORMAL, RESERVED = (
    "empty", "NUL", "newline", "backslash", "absolute", "dotdot", "dot-or-empty", "not-normalised", "reserved")
# Top-level names the installer keeps for its own records in a version dir (.bundle-installed, .bundle-index.json).
RESERVED_PREFIX = ".bundle-"


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


def parents(path):
    """The directories a relative path lies under: 'a/b/c' -> ['a', 'a/b']."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]

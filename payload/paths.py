"""Checks on paths that come from a manifest or an index, before anything is written with them."""

import posixpath

from .errors import IntegrityError


def check_relative(path, what="path", error=IntegrityError):
    """Return `path` if it is a plain relative POSIX path that stays inside its root, else raise `error`."""
    if not isinstance(path, str) or not path:
        raise error("%s %r is empty or not a string" % (what, path))
    if "\x00" in path or "\\" in path:
        raise error("%s %r has a NUL or backslash" % (what, path))
    if path.startswith("/"):
        raise error("%s %r is absolute; paths must be relative to the install root" % (what, path))
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise error("%s %r has an empty, '.' or '..' component" % (what, path))
    if posixpath.normpath(path) != path:
        raise error("%s %r is not normalised" % (what, path))
    return path

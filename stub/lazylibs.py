"""Unpacks the stub's on-demand libraries (payload/lazylibs.py) when an import first asks for one of them.

`install_finder()` puts a finder last on sys.meta_path: when an import of one of those modules finds nothing, the
finder unpacks the whole set into the bootloader's directory (where the dynamic loader already looks: the
bootloader sets LD_LIBRARY_PATH) and lets the import go on.
"""

import os
import sys

from payload import lazylibs


class _Finder:
    """Last on sys.meta_path: consulted only for imports nothing else found."""

    def __init__(self, base, blob):
        from _thread import RLock

        self.base, self.blob = base, blob
        # The early pull's thread imports ssl while the main thread may import hashlib. Reentrant, because
        # unpacking imports zstandard, whose own imports of modules it can do without come back here (with a
        # plain lock, a Python 3.9 stub's --bundle-verify hung for good).
        self.lock = RLock()
        self.modules = None
        self.unpacked = False
        self.unpacking = False

    def find_spec(self, name, path=None, target=None):
        if "." in name:
            return None
        with self.lock:
            if self.unpacking:  # an import made by the unpacking itself
                return None
            if self.modules is None:
                with open(self.blob, "rb") as f:
                    self.modules = lazylibs.read_modules(f, self.blob)
            if name not in self.modules:
                return None
            unpacked = self.unpacked
        if not unpacked:
            # The decoder is imported before the lock is taken: its import takes the import system's own lock for
            # zstandard, and another thread that holds that one may come here for zstandard's optional imports.
            # Taken the other way round (this lock, then zstandard's), an early pull's thread and the main thread
            # waited for each other for good.
            import zstandard  # noqa: F401

            with self.lock:
                if not self.unpacked:
                    self.unpacking = True
                    try:
                        self._unpack()
                    finally:
                        self.unpacking = False
                    self.unpacked = True
        import importlib
        from importlib.machinery import PathFinder

        importlib.invalidate_caches()  # the path finders cached these directories without the new files
        return PathFinder.find_spec(name, path)

    def _unpack(self):
        with open(self.blob, "rb") as f:
            files = lazylibs.unpack(f.read(), self.blob)
        for dest, _, data in files:
            target = os.path.join(self.base, dest)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            partial = target + ".unpacking"
            with open(partial, "wb") as f:
                f.write(data)
            os.chmod(partial, 0o700)  # as the bootloader writes its binaries
            os.rename(partial, target)


def install_finder():
    """In a one-file stub that carries the set: put the finder last on sys.meta_path (else do nothing)."""
    base = getattr(sys, "_MEIPASS", None)
    if base is not None and os.path.isfile(os.path.join(base, lazylibs.BLOB)):
        sys.meta_path.append(_Finder(base, os.path.join(base, lazylibs.BLOB)))

"""Unpacks the stub's on-demand libraries (payload/lazylibs.py) when an import first asks for one of them.

`install_finder()` puts a finder last on sys.meta_path: when an import of one of those modules finds nothing, the
finder unpacks that module and the libraries it needs (payload/lazylibs.py NEEDS) into the bootloader's directory
(where the dynamic loader already looks: the bootloader sets LD_LIBRARY_PATH) and lets the import go on.
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
        self.files = None  # the set's header, read at the first import that comes here
        self.unpacked = set()  # the paths written
        self.unpacking = False

    def find_spec(self, name, path=None, target=None):
        if "." in name:
            return None
        with self.lock:
            if self.unpacking:  # an import made by the unpacking itself
                return None
            if name not in self._modules():
                return None
            done = lazylibs.wanted_by(self.files, name) <= self.unpacked
        if not done:
            self._unpack_for(name)
        import importlib
        from importlib.machinery import PathFinder

        importlib.invalidate_caches()  # the path finders cached these directories without the new files
        return PathFinder.find_spec(name, path)

    def _modules(self):
        if self.files is None:
            with open(self.blob, "rb") as f:
                self.files = lazylibs.read_files(f, self.blob)
        return {module for _, _, module, _ in self.files if module}

    def _unpack_for(self, name):
        """Write the files an import of the module `name` needs that are not written yet."""
        # The decoder is imported before the lock is taken: its import takes the import system's own lock for
        # zstandard, and another thread that holds that one may come here for zstandard's optional imports.
        # Taken the other way round (this lock, then zstandard's), an early pull's thread and the main thread
        # waited for each other for good.
        import zstandard  # noqa: F401

        with self.lock:
            self._modules()
            paths = lazylibs.wanted_by(self.files, name) - self.unpacked
            if not paths:
                return
            self.unpacking = True
            try:
                with open(self.blob, "rb") as f:
                    files = lazylibs.unpack(f.read(), self.blob, paths)
                for dest, _, data in files:
                    target = os.path.join(self.base, dest)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    partial = target + ".unpacking"
                    with open(partial, "wb") as f:
                        f.write(data)
                    os.chmod(partial, 0o700)  # as the bootloader writes its binaries
                    os.rename(partial, target)
                self.unpacked |= paths
            finally:
                self.unpacking = False


def install_finder():
    """In a one-file stub that carries the set: put the finder last on sys.meta_path (else do nothing)."""
    base = getattr(sys, "_MEIPASS", None)
    if base is not None and os.path.isfile(os.path.join(base, lazylibs.BLOB)):
        sys.meta_path.append(_Finder(base, os.path.join(base, lazylibs.BLOB)))

"""The stub's libraries that only some starts need, unpacked when an import first asks for one of them.

A one-file stub unpacks every binary it carries at every start. OpenSSL (libssl, libcrypto and the `_ssl` and
`_hashlib` modules) and `unicodedata` are a third of those bytes, yet an installed start, the common case, uses
none of them: only installing (hashlib), pulling (ssl, idna) and updating do. So the stub build
(bundler/stubbuild.py) takes them out of PyInstaller's archive and packs them into one data file, BLOB, which the
bootloader copies as it is (already compressed, so cheaply). At run time `install_finder()` puts a finder last on
sys.meta_path: when an import of one of those modules finds nothing, the finder unpacks the whole set into the
bootloader's directory (where the dynamic loader already looks, LD_LIBRARY_PATH) and lets the import go on.

BLOB is MAGIC, one line per file ("<size> <module or -> <path under sys._MEIPASS>"), an empty line, then one zstd
frame (with its checksum) of the files' bytes in that order.
"""

import os
import sys

BLOB = "bundler-lazy-libs"
MAGIC = b"bundler lazy libraries 1\n"
MODULES = ("_ssl", "_hashlib", "unicodedata")  # the extension modules packed, with the libraries named next
LIBRARIES = ("libssl.", "libcrypto.")  # shared libraries needed only by those modules


def is_lazy(dest_name, typecode):
    """Whether PyInstaller's binary entry (`dest_name`, `typecode`) goes into BLOB."""
    base = os.path.basename(dest_name)
    if typecode == "EXTENSION":
        return base.split(".", 1)[0] in MODULES
    return typecode == "BINARY" and base.startswith(LIBRARIES)


def pack(entries, out):
    """Write BLOB to `out` from `entries`: (path under sys._MEIPASS, source file, module name or None)."""
    import zstandard

    header, contents = [MAGIC], []
    for dest, source, module in entries:
        with open(source, "rb") as f:
            data = f.read()
        header.append(("%d %s %s\n" % (len(data), module or "-", dest)).encode("utf-8"))
        contents.append(data)
    compressor = zstandard.ZstdCompressor(level=19, write_checksum=True, write_content_size=True)
    with open(out, "wb") as f:
        f.write(b"".join(header) + b"\n")
        f.write(compressor.compress(b"".join(contents)))


def _read(path):
    with open(path, "rb") as f:
        data = f.read()
    end = data.find(b"\n\n")
    if not data.startswith(MAGIC) or end < 0:
        raise ImportError("%s is not the stub's library set; the bundle is damaged, copy it again" % path)
    files = []
    for line in data[len(MAGIC):end].decode("utf-8").splitlines():
        size, module, dest = line.split(" ", 2)
        files.append((int(size), None if module == "-" else module, dest))
    return files, data[end + 2:]


class _Finder(object):
    """Last on sys.meta_path: consulted only for imports nothing else found."""

    def __init__(self, base, blob):
        from _thread import allocate_lock

        self.base, self.blob = base, blob
        self.lock = allocate_lock()  # the early pull's thread imports ssl while the main thread may import hashlib
        self.modules = None
        self.unpacked = False

    def find_spec(self, name, path=None, target=None):
        if "." in name:
            return None
        with self.lock:
            if self.modules is None:
                self.files, self.data = _read(self.blob)
                self.modules = set(module for _, module, _ in self.files if module)
            if name not in self.modules:
                return None
            if not self.unpacked:
                self._unpack()
                self.unpacked = True
        import importlib
        from importlib.machinery import PathFinder

        importlib.invalidate_caches()  # the path finders cached these directories without the new files
        return PathFinder.find_spec(name, path)

    def _unpack(self):
        import zstandard

        try:
            data = zstandard.ZstdDecompressor().decompress(self.data)
        except zstandard.ZstdError as exc:
            raise ImportError("the stub's library set %s is damaged (%s); copy the bundle again" % (self.blob, exc))
        if len(data) != sum(size for size, _, _ in self.files):
            raise ImportError("the stub's library set %s is damaged; copy the bundle again" % self.blob)
        offset = 0
        for size, _, dest in self.files:
            target = os.path.join(self.base, dest)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            partial = target + ".unpacking"
            with open(partial, "wb") as f:
                f.write(data[offset:offset + size])
            os.chmod(partial, 0o700)  # as the bootloader writes its binaries
            os.rename(partial, target)
            offset += size
        self.data = None


def install_finder():
    """In a one-file stub that carries BLOB: put the finder last on sys.meta_path (else do nothing)."""
    base = getattr(sys, "_MEIPASS", None)
    if base is not None and os.path.isfile(os.path.join(base, BLOB)):
        sys.meta_path.append(_Finder(base, os.path.join(base, BLOB)))

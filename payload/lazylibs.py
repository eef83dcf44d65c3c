"""The stub's libraries that only some starts need, packed into one data file that the stub unpacks on demand.

A one-file stub unpacks every binary it carries at every start. OpenSSL (libssl, libcrypto and the `_ssl` and
`_hashlib` modules) and `unicodedata` are a third of those bytes, yet an installed start, the common case, uses
none of them: only installing (hashlib), pulling (ssl, idna) and updating do. So the stub build
(bundler/stubs/build.py's SPEC) takes them out of PyInstaller's archive and packs them into BLOB, which the
bootloader copies as it is (already compressed, so cheaply); stub/lazylibs.py unpacks it when an import needs one.
bundler/build/glibc.py reads it too: the stub's glibc floor counts these files.

BLOB is MAGIC, one line per file ("<size> <module or -> <path under sys._MEIPASS>"), an empty line, then one zstd
frame (with its checksum) of the files' bytes in that order.
"""

import os

from payload.errors import IntegrityError

BLOB = "bundler-lazy-libs"
MAGIC = b"bundler lazy libraries 1\n"
# The extension modules packed, with the libraries named next. `_ctypes` is here because PyInstaller's bootstrap
# imports ctypes at every start when it can (pyimod03_ctypes), which loads _ctypes and libffi; without them in the
# archive that import fails quietly there, and only --bundle-rollback (renameat2) unpacks and uses them.
MODULES = ("_ssl", "_hashlib", "unicodedata", "_ctypes")
LIBRARIES = ("libssl.", "libcrypto.", "libffi.")  # shared libraries needed only by those modules
HEADER_MAX = 64 * 1024  # the header's bytes at most, so a reader of the module names reads no more than that


def module_of(dest_name, typecode):
    """The module name of PyInstaller's binary entry (`dest_name`, `typecode`) when it is an extension, else None."""
    return os.path.basename(dest_name).split(".", 1)[0] if typecode == "EXTENSION" else None


def is_lazy(dest_name, typecode):
    """Whether PyInstaller's binary entry (`dest_name`, `typecode`) goes into BLOB."""
    if typecode == "EXTENSION":
        return module_of(dest_name, typecode) in MODULES
    return typecode == "BINARY" and os.path.basename(dest_name).startswith(LIBRARIES)


def pack(entries, out):
    """Write BLOB to `out` from `entries`: (path under sys._MEIPASS, source file, module name or None)."""
    import zstandard

    header, contents = [MAGIC], []
    for dest, source, module in entries:
        with open(source, "rb") as f:
            data = f.read()
        header.append(f"{len(data)} {module or '-'} {dest}\n".encode())
        contents.append(data)
    if sum(map(len, header)) + 1 > HEADER_MAX:
        raise ValueError(f"the library set's header would exceed {HEADER_MAX} bytes")
    compressor = zstandard.ZstdCompressor(level=19, write_checksum=True, write_content_size=True)
    with open(out, "wb") as f:
        f.write(b"".join(header) + b"\n")
        f.write(compressor.compress(b"".join(contents)))


def read_header(blob, where):
    """([(size, module or None, path)], the compressed rest) of BLOB's bytes `blob`."""
    end = blob.find(b"\n\n")
    try:
        if not blob.startswith(MAGIC) or end < 0:
            raise ValueError("no header")
        files = []
        for line in blob[len(MAGIC) : end].decode("utf-8").splitlines():
            size, module, dest = line.split(" ", 2)
            files.append((int(size), None if module == "-" else module, dest))
    except ValueError as exc:
        raise IntegrityError(f"{where} is not the stub's library set; the bundle is damaged, copy it again") from exc
    return files, blob[end + 2 :]


def read_modules(f, where):
    """The module names in the set open as `f`, from its header alone (at most HEADER_MAX bytes are read)."""
    files, _ = read_header(f.read(HEADER_MAX), where)
    return set(module for _, module, _ in files if module)


def unpack(blob, where):
    """[(path, module or None, bytes)] of BLOB's bytes `blob`; IntegrityError naming `where` when damaged."""
    import zstandard

    files, compressed = read_header(blob, where)
    try:
        data = zstandard.ZstdDecompressor().decompress(compressed)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"the stub's library set {where} is damaged ({exc}); copy the bundle again") from None
    if len(data) != sum(size for size, _, _ in files):
        raise IntegrityError(f"the stub's library set {where} is damaged; copy the bundle again")
    out, offset = [], 0
    for size, module, dest in files:
        out.append((dest, module, data[offset : offset + size]))
        offset += size
    return out

"""The stub's libraries that only some starts need, packed into one data file that the stub unpacks on demand.

A one-file stub unpacks every binary it carries at every start. OpenSSL (libssl, libcrypto and the `_ssl` and
`_hashlib` modules) and `unicodedata` are a third of those bytes, yet an installed start, the common case, uses
none of them: only installing (hashlib), pulling (ssl, idna) and updating do. So the stub build
(bundler/stubs/build.py's SPEC) takes them out of PyInstaller's archive and packs them into BLOB, which the
bootloader copies as it is (already compressed, so cheaply); stub/lazylibs.py unpacks it when an import needs one.
bundler/build/glibc.py reads it too: the stub's glibc floor counts these files.

BLOB is MAGIC, one line per file ("<size> <stored size> <module or -> <path under sys._MEIPASS>"), an empty line,
then each file's bytes as a zstd frame of its own (with its checksum), in that order: an import unpacks only its
module and the libraries NEEDS names for it (a first install, hashlib: 4.8 of the 7 MB), not the whole set.
"""

import os

from payload.errors import IntegrityError

BLOB = "bundler-lazy-libs"
MAGIC_PREFIX = b"bundler lazy libraries "  # then the format's number: a set of another one is named as such
MAGIC = MAGIC_PREFIX + b"2\n"
# The extension modules packed, with the libraries named next. `_ctypes` is here because PyInstaller's bootstrap
# imports ctypes at every start when it can (pyimod03_ctypes), which loads _ctypes and libffi; without them in the
# archive that import fails quietly there, and only --bundle-rollback (renameat2) unpacks and uses them.
MODULES = ("_ssl", "_hashlib", "unicodedata", "_ctypes")
LIBRARIES = ("libssl.", "libcrypto.", "libffi.")  # shared libraries needed only by those modules
# The libraries each module loads (its DT_NEEDED among LIBRARIES, libssl's own included; tests/e2e/test_lazy_libs.py
# reads them from the real stub's files). An import of any other module unpacks the whole set.
NEEDS = {"_hashlib": ("libcrypto.",), "_ssl": ("libssl.", "libcrypto."), "_ctypes": ("libffi.",), "unicodedata": ()}
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

    compressor = zstandard.ZstdCompressor(level=19, write_checksum=True, write_content_size=True)
    header, frames = [MAGIC], []
    for dest, source, module in entries:
        with open(source, "rb") as f:
            data = f.read()
        frames.append(compressor.compress(data))
        header.append(f"{len(data)} {len(frames[-1])} {module or '-'} {dest}\n".encode())
    if sum(map(len, header)) + 1 > HEADER_MAX:
        raise ValueError(f"the library set's header would exceed {HEADER_MAX} bytes")
    with open(out, "wb") as f:
        f.write(b"".join(header) + b"\n")
        f.write(b"".join(frames))


def read_header(blob, where):
    """([(size, stored size, module or None, path)], the frames after it) of BLOB's bytes `blob`."""
    end = blob.find(b"\n\n")
    first_line = blob[: blob.find(b"\n") + 1]
    if first_line != MAGIC and first_line.startswith(MAGIC_PREFIX):
        raise IntegrityError(
            f"{where}: its library set is {first_line.strip().decode(errors='replace')!r}, this bundler reads "
            f"{MAGIC.strip().decode()!r}: the stub was built by another bundler; build it again (`bundler stub`)"
        )
    try:
        if not blob.startswith(MAGIC) or end < 0:
            raise ValueError("no header")
        files = []
        for line in blob[len(MAGIC) : end].decode("utf-8").splitlines():
            size, stored, module, dest = line.split(" ", 3)
            files.append((int(size), int(stored), None if module == "-" else module, dest))
    except ValueError as exc:
        raise IntegrityError(f"{where} is not the stub's library set; the bundle is damaged, copy it again") from exc
    return files, blob[end + 2 :]


def read_files(f, where):
    """The files of the set open as `f`, as read_header gives them, from its header alone (at most HEADER_MAX bytes
    are read)."""
    return read_header(f.read(HEADER_MAX), where)[0]


def wanted_by(files, module):
    """The paths of `files` (as read_header gives them) that an import of `module` needs unpacked: the module and
    the libraries NEEDS names for it; every file for a module NEEDS does not know."""
    if module not in NEEDS:
        return {dest for _, _, _, dest in files}
    libraries = NEEDS[module]
    return {dest for _, _, name, dest in files if name == module or os.path.basename(dest).startswith(libraries)}


def unpack(blob, where, paths=None):
    """[(path, module or None, bytes)] of BLOB's bytes `blob`, only the files in `paths` if given; IntegrityError
    naming `where` when damaged."""
    import zstandard

    files, frames = read_header(blob, where)
    if sum(stored for _, stored, _, _ in files) != len(frames):
        raise IntegrityError(f"the stub's library set {where} is damaged; copy the bundle again")
    decoder, out, offset = zstandard.ZstdDecompressor(), [], 0
    for size, stored, module, dest in files:
        frame = frames[offset : offset + stored]
        offset += stored
        if paths is not None and dest not in paths:
            continue
        try:
            data = decoder.decompress(frame)
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"the stub's library set {where} is damaged ({exc}); copy the bundle again") from None
        if len(data) != size:
            raise IntegrityError(f"the stub's library set {where} is damaged; copy the bundle again")
        out.append((dest, module, data))
    return out

"""Static stubs (`make --stub static`): the portable stub of an architecture with a `libc` section, the C library
its bootloader and Python run on, so that a bundle starts where the system has no glibc (Alpine, OpenWrt,
Buildroot, busybox) or an older one than the stub's floor.

The section holds glibc's loader and every library the bootloader and the ELF files in PyInstaller's archive need
that the archive does not carry itself, with their own needs in turn (zlib, expat, libcrypt), plus libgcc_s, which
glibc loads by name to unwind a thread. They come from the Debian packages of a release whose loader takes
`--argv0` and `--preload` (glibc 2.33 and later: bookworm; riscv64's first release, trixie), and run code built
against the older glibc of the portable stub's root, as any newer glibc does. The launcher (stub/launcher.c) copies
each into a memory file and starts the bootloader through the loader; docs/format.md gives the section's layout.
"""

import hashlib
import io
import json
import os
import struct
import tempfile
from pathlib import Path, PurePosixPath

from bundler.build.glibc import archive_elves, linked_names
from bundler.cache import file_sha256
from bundler.stubs import debian
from bundler.stubs.build import cached_stub
from bundler.stubs.portable import portable_stub
from payload import fs
from payload.elf import find_section, insert_section
from payload.errors import BundleError
from payload.layout import BOOTLOADER, LIBC

RELEASES = {"amd64": "bookworm", "arm64": "bookworm", "arm": "bookworm", "riscv64": "trixie"}
PACKAGES = ("libc6", "libgcc-s1", "zlib1g", "libexpat1", "libcrypt1")
LICENSES = {  # SPDX, from each package's debian/copyright
    "libc6": "LGPL-2.1-or-later",
    "libgcc-s1": "GPL-3.0-or-later WITH GCC-exception-3.1",
    "zlib1g": "Zlib",
    "libexpat1": "MIT",
    "libcrypt1": "LGPL-2.1-or-later",
}
ALWAYS = ("libgcc_s.so.1",)  # glibc dlopens it to unwind a cancelled or exiting thread: no file names it
MAGIC = b"BNDLIBC1"
_COUNT = struct.Struct("<I")
_SIZE = struct.Struct("<Q")


def static_stub(cache, arch, mirror=None, offline=False, log=print):
    """The cached static stub for `arch`: the portable stub and the C library it carries (both built or fetched
    once)."""
    from bundler.stubs import debs  # only to build one: inspect and the floor read the section alone

    base = portable_stub(cache, arch, mirror=mirror, offline=offline, log=log)
    tgt = debian.target(arch)
    fetched = debs.fetch(cache, RELEASES[arch], tgt.debian_arch, PACKAGES, mirror=mirror, offline=offline, log=log)
    # The carried files follow from the portable stub and the packages (their .debs' sha256s): a cached static
    # stub is found without reading either.
    debs_digest = "|".join(f"{name}={sha256}" for name, (_, sha256) in sorted(fetched.sources.items()))
    material = f"{base.name}|{debs_digest}"
    path = base.with_name(f"{base.name}-static-{hashlib.sha256(material.encode()).hexdigest()[:16]}")
    if cached_stub(cache, path):
        return path
    with tempfile.TemporaryDirectory(prefix="bundler-static-", dir=cache.tmp) as tmp:
        section = os.path.join(tmp, LIBC)
        write_section(carried_files(base, fetched.root, arch), section)
        with fs.atomic_path(path, mode=0o755, temp_dir=cache.tmp) as tmp_path:
            insert_section(str(base), tmp_path, LIBC, section, before=BOOTLOADER, align=16)
            fs.write_atomic(path.with_name(path.name + ".sha256"), file_sha256(tmp_path) + "\n", temp_dir=cache.tmp)
    _record(base, path, fetched, tgt.debian_arch, RELEASES[arch])
    log(f"static {arch} stub ready: {path} (carries glibc from Debian {RELEASES[arch]})")
    return path


def carried_files(stub, tree, arch):
    """[(soname, path in `tree`)] the stub needs from the C library, the loader first."""
    with open(stub, "rb") as f:
        span = find_section(f, BOOTLOADER)
        if span is None:
            raise BundleError(f"{stub}: no launcher and bootloader; rebuild the stub")
        f.seek(span[0])
        bootloader = f.read(span[1])
        elves = archive_elves(f, str(stub))
    loader = _interpreter(bootloader, stub)
    # The bootloader's needs come first (it runs before anything is unpacked); a need of the archive's own files
    # that the archive carries is found there.
    own = {PurePosixPath(name).name for name, _ in elves}
    wanted = [(name, False) for name in linked_names(io.BytesIO(bootloader), "the bootloader")[1] + list(ALWAYS)]
    for name, data in elves:
        wanted += [(need, True) for need in linked_names(io.BytesIO(data), f"{name} in {stub}")[1]]
    dirs = _library_dirs(tree)
    found = {loader: _find(loader, dirs, tree, arch)}
    while wanted:
        name, archive_has_it = wanted.pop(0)
        if name in found or (archive_has_it and name in own):
            continue
        found[name] = _find(name, dirs, tree, arch)
        with open(found[name], "rb") as f:
            wanted += [(need, False) for need in linked_names(f, str(found[name]))[1]]
    return [(loader, found.pop(loader))] + sorted(found.items())


def _interpreter(bootloader, stub):
    with io.BytesIO(bootloader) as f:
        span = find_section(f, ".interp")
        if span is None:
            raise BundleError(f"{stub}: its bootloader names no loader (.interp); rebuild the stub")
        f.seek(span[0])
        return PurePosixPath(f.read(span[1]).rstrip(b"\0").decode()).name


def _library_dirs(tree):
    """Where Debian puts a release's libraries: lib/TRIPLET and usr/lib/TRIPLET (merged /usr or not), then lib."""
    tree = Path(tree)
    dirs = []
    for top in ("lib", "usr/lib"):
        base = tree / top
        if base.is_dir():
            dirs += sorted(p for p in base.iterdir() if p.is_dir() and "-linux-" in p.name) + [base]
    return dirs


def _find(soname, dirs, tree, arch):
    for directory in dirs:
        candidate = directory / soname
        if candidate.is_symlink() or candidate.exists():
            resolved = _resolve(candidate, tree)
            if resolved is not None:
                return resolved
    raise BundleError(
        f"the static {arch} stub needs {soname}, which none of the Debian packages {', '.join(PACKAGES)} provides; "
        "this PyInstaller or Python build needs another library: report it"
    )


def _resolve(path, tree):
    """`path` with its symbolic links followed inside `tree` (a link out of it, or a loop: None)."""
    tree = Path(tree).resolve()
    for _ in range(16):
        if not path.is_symlink():
            real = path.resolve()
            return real if real.is_file() and tree in real.parents else None
        target = os.readlink(path)
        path = (tree / target.lstrip("/")) if target.startswith("/") else (path.parent / target)
    return None


def write_section(files, out):
    """The `libc` section: MAGIC, the number of files, then each file's name length, name, size and bytes."""
    with open(out, "wb") as f:
        f.write(MAGIC + _COUNT.pack(len(files)))
        for name, path in files:
            data = Path(path).read_bytes()
            f.write(_COUNT.pack(len(name.encode())) + name.encode() + _SIZE.pack(len(data)) + data)


def carried_libc(path):
    """[(name, bytes)] of the C library the stub (or bundle) at `path` carries, or None for one that carries none."""
    with open(path, "rb") as f:
        span = find_section(f, LIBC)
        if span is None:
            return None
        f.seek(span[0])
        return read_section(f.read(span[1]))


def read_section(data):
    """[(name, bytes)] of a `libc` section (for inspect and the tests); ValueError when it is not one."""
    if data[:8] != MAGIC:
        raise ValueError("not a libc section")
    (count,), at, files = _COUNT.unpack_from(data, 8), 12, []
    for _ in range(count):
        (length,) = _COUNT.unpack_from(data, at)
        name = data[at + 4 : at + 4 + length].decode()
        (size,) = _SIZE.unpack_from(data, at + 4 + length)
        start = at + 4 + length + 8
        if start + size > len(data):
            raise ValueError("a libc section cut short")
        files.append((name, data[start : start + size]))
        at = start + size
    return files


def _record(base, path, fetched, debian_arch, release):
    """The static stub's components: the portable stub's, and the Debian packages of the C library it carries."""
    from dataclasses import asdict

    from bundler.sbom.stub import RECORD_SUFFIX, Component, _deb_purl, describe

    _, found = describe(base, "portable")
    found += [
        Component(name, version, _deb_purl(name, version, debian_arch), license=LICENSES[name])
        for name, version in sorted(fetched.versions.items())
    ]
    doc = {"kind": "static", "release": release, "components": [asdict(c) for c in found]}
    fs.write_atomic(Path(str(path) + RECORD_SUFFIX), json.dumps(doc, indent=1, sort_keys=True) + "\n")

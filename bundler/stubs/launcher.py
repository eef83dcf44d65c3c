"""The launcher: stub/launcher.c, the static first stage at the front of every stub (docs/format.md, "1. The
file"), compiled once per architecture with zig's C compiler (the `ziglang` package) against musl, and cached.

A stub is put together from PyInstaller's one-file program and the launcher: the launcher's ELF file, then a
`bootloader` section (PyInstaller's bootloader, its `pydata` emptied), then `pydata` (PyInstaller's archive,
unchanged). The payload section goes before `pydata` as before.
"""

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from payload import arches, fs
from payload.elf import elf_machine, find_section, insert_section
from payload.errors import BundleError, IntegrityError
from payload.layout import ARCHIVE, BOOTLOADER

SOURCE = Path(__file__).resolve().parents[2] / "stub" / "launcher.c"
# Small and reproducible: no unwind tables (nothing unwinds), no build id, no path of the build host inside.
FLAGS = ("-Os", "-static", "-s", "-fno-unwind-tables", "-fno-asynchronous-unwind-tables", "-Wall", "-Werror")
ZIG_TARGETS = {
    "amd64": "x86_64-linux-musl",
    "arm64": "aarch64-linux-musl",
    "arm": "arm-linux-musleabihf",
    "riscv64": "riscv64-linux-musl",
}


def zig_version():
    from importlib import metadata

    return metadata.version("ziglang")


def musl_version():
    """The version of the musl that zig links into the launcher (the one it carries in its lib/), or None."""
    import ziglang

    header = Path(ziglang.__file__).parent / "lib" / "libc" / "musl" / "src" / "internal" / "version.h"
    try:
        text = header.read_text()
    except OSError:
        return None
    quoted = text.partition('"')[2].partition('"')[0]
    return quoted or None


def recipe_digest():
    """What every launcher is built from: the source, the compiler's version and the flags (in the stub key)."""
    material = SOURCE.read_bytes() + repr((zig_version(), FLAGS, sorted(ZIG_TARGETS.items()))).encode()
    return hashlib.sha256(material).hexdigest()


def launcher(cache, arch):
    """The cached launcher for `arch`, compiled now when it is not there."""
    path = cache.dir("launchers") / f"launcher-{arch}-{recipe_digest()[:24]}"
    if path.exists():
        return path
    with tempfile.TemporaryDirectory(prefix="bundler-launcher-") as tmp:
        out = os.path.join(tmp, "launcher")
        cmd = [sys.executable, "-m", "ziglang", "cc", "-target", ZIG_TARGETS[arch], *FLAGS, "-o", out, str(SOURCE)]
        # zig keeps what it builds once (musl for each target) in its own cache (~/.cache/zig): the first build of
        # an architecture takes about 30 s, later ones a second.
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise BundleError(f"the launcher for {arch} did not compile: {tail}")
        with fs.atomic_path(path, mode=0o755, temp_dir=cache.tmp) as tmp_path:
            os.replace(out, tmp_path)
    return path


def arch_of(path):
    """The bundle architecture of the program at `path`."""
    with open(path, "rb") as f:
        arch = elf_machine(f, str(path))
    if arches.get(arch) is None:
        raise IntegrityError(f"{path}: a program for {arch}, no bundle architecture; rebuild the stub")
    return arch


def has_launcher(path):
    with open(path, "rb") as f:
        return find_section(f, BOOTLOADER) is not None


def put_together(pyinstaller_stub, launcher_path, output):
    """Write `output`: the launcher with PyInstaller's bootloader and archive in sections of their own."""
    with tempfile.TemporaryDirectory(prefix="bundler-compose-", dir=os.path.dirname(output) or None) as tmp:
        empty, archive = os.path.join(tmp, "empty"), os.path.join(tmp, "archive")
        bootloader, with_archive = os.path.join(tmp, "bootloader"), os.path.join(tmp, "with-archive")
        open(empty, "wb").close()
        with open(pyinstaller_stub, "rb") as f, open(archive, "wb") as out:
            found = find_section(f, ARCHIVE)
            if found is None:
                raise IntegrityError(f"{pyinstaller_stub}: no PyInstaller archive ({ARCHIVE!r}); rebuild the stub")
            f.seek(found[0])
            out.write(f.read(found[1]))
        # The bootloader keeps a well-formed ELF file (its glibc needs are read from it), with `pydata` empty: it
        # reads the archive from the file it is started as, which is the whole stub.
        insert_section(
            pyinstaller_stub, bootloader, ARCHIVE, empty, before=_after(pyinstaller_stub), align=1, replace=True
        )
        insert_section(str(launcher_path), with_archive, ARCHIVE, archive, before=None, align=16)
        insert_section(with_archive, output, BOOTLOADER, bootloader, before=ARCHIVE, align=16)


def _after(path):
    """The section right after `pydata` in PyInstaller's program (its section names)."""
    from payload.elf import section_table

    with open(path, "rb") as f:
        names = [section[0] for section in section_table(f, str(path))[1]]
    at = names.index(ARCHIVE) if ARCHIVE in names else -1
    if at < 0 or at + 1 >= len(names):
        raise IntegrityError(f"{path}: no section follows {ARCHIVE!r}; this PyInstaller build is not supported")
    return names[at + 1]

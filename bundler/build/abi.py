"""The ABI gate: before anything is compressed, every ELF file of a bundle must be built for the target
architecture, need no newer glibc than the manifest's `min_glibc` (when it sets one), and find every shared
library it needs either in the bundle, in glibc itself, or in the manifest's `host_libs`."""

import os
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from bundler.build.glibc import ELF_MAGIC, format_version, glibc_needs, linked_names
from payload.elf import elf_machine
from payload.errors import UsageError

# glibc's own libraries: where a file can run at all, its glibc provides them.
GLIBC_LIBS = (
    "libc.so.*",
    "libm.so.*",
    "libmvec.so.*",
    "libpthread.so.*",
    "libdl.so.*",
    "librt.so.*",
    "libresolv.so.*",
    "libutil.so.*",
    "libanl.so.*",
    "ld-linux*",
    "ld64.so.*",
)


def from_glibc(soname):
    return any(fnmatchcase(soname, pattern) for pattern in GLIBC_LIBS)


@dataclass
class Abi:
    """What the bundle's ELF files ask of the target."""

    floors: dict = field(default_factory=dict)  # path -> (major, minor), files that need some GLIBC_x.y
    host_libs: dict = field(default_factory=dict)  # soname -> [paths needing it], provided by the target

    @property
    def floor(self):
        """(floor, the file that needs it) of the files, or (None, None)."""
        if not self.floors:
            return None, None
        path = max(sorted(self.floors), key=lambda p: self.floors[p])  # the first path of the highest need
        return self.floors[path], path


def check_files(members_by_group, arch, min_glibc=None, host_libs=()):
    """Refuse foreign ELF files, files needing a newer glibc than `min_glibc` and libraries nobody provides, each
    kind naming every file (UsageError); return the Abi of the files."""
    elves = {}  # path -> (soname, needed)
    abi = Abi()
    foreign, missing = [], {}
    for members in members_by_group.values():
        for member in members:
            if member.kind != "file":
                continue
            with open(member.source, "rb") as f:
                if f.read(len(ELF_MAGIC)) != ELF_MAGIC:
                    continue
                machine = elf_machine(f, member.path)
                if machine != arch:
                    foreign.append((member.path, machine))
                    continue
                needs = max(glibc_needs(f, member.path), default=None)
                elves[member.path] = linked_names(f, member.path)
            if needs:
                abi.floors[member.path] = needs
    if foreign:
        path, machine = foreign[0]
        others = "".join(f", '{p}' for {m}" for p, m in foreign[1:])
        raise UsageError(
            f"file '{path}' is an ELF file for {machine}{others}, but the bundle is for {arch}; give each a source "
            f"built for {arch} ([file.source.{arch}] in the manifest)"
        )
    over = [(p, v) for p, v in sorted(abi.floors.items()) if min_glibc and v > min_glibc]
    if over:
        names = ", ".join(f"'{p}' needs glibc {format_version(v)}" for p, v in over)
        raise UsageError(
            f'{names}: newer than min_glibc = "{format_version(min_glibc)}" in the manifest; use builds linked '
            "against an older glibc (or statically), or raise min_glibc"
        )
    for soname, paths in unprovided(elves, [m.path for members in members_by_group.values() for m in members]):
        allowed = any(fnmatchcase(soname, pattern) for pattern in host_libs)
        (abi.host_libs if allowed else missing)[soname] = paths
    if missing:
        declare = ", ".join(f'"{s}"' for s in sorted(set(host_libs) | set(missing)))
        raise UsageError(
            f"{describe_libs(missing)}: shared libraries the bundle does not carry; add them as files, or declare "
            f"that the target provides them: [bundle] host_libs = [{declare}]"
        )
    return abi


def unprovided(elves, paths):
    """[(soname, [paths of the files needing it])] of the libraries that `elves` ({path: (soname, needed)}) need
    and neither the bundle's files (`paths`: by file name or soname) nor glibc provide."""
    carried = {os.path.basename(p) for p in paths}
    carried.update(soname for soname, _ in elves.values() if soname)
    found = {}
    for path, (_, needed) in sorted(elves.items()):
        for soname in needed:
            if soname not in carried and not from_glibc(soname):
                found.setdefault(soname, []).append(path)
    return sorted(found.items())


def bundle_host_libs(payload, f):
    """{soname: [paths]} of the libraries an existing bundle's files need from the target: its file groups are
    unpacked (and verified) into a temporary directory and read there."""
    import tempfile

    from payload.groups import extract_group

    index = payload.index
    elves = {}
    with tempfile.TemporaryDirectory(prefix="bundler-inspect-") as tmp:
        data = payload.open_data(f)
        with data.verifying():
            for group in index.groups:
                entries = index.entries_of(group.name)
                if any(e.kind == "file" for e in entries):
                    extract_group(data, payload.data_offset, group, entries, dest=tmp)
        for entry in index.files():
            with open(os.path.join(tmp, entry.path), "rb") as elf:
                if elf.read(len(ELF_MAGIC)) == ELF_MAGIC:
                    elves[entry.path] = linked_names(elf, entry.path)
    return dict(unprovided(elves, [e.path for e in index.files()]))


def describe_libs(libs):
    """'libcap.so.2 (bin/crun), libseccomp.so.2 (bin/crun, bin/runc)' for {soname: [paths]}."""
    return ", ".join(f"{soname} ({', '.join(paths)})" for soname, paths in sorted(libs.items()))


def check_stub_floor(stub_floor, min_glibc, stub_path):
    if min_glibc and stub_floor and stub_floor > min_glibc:
        raise UsageError(
            f"the stub {stub_path} needs glibc {format_version(stub_floor)}, newer than min_glibc = "
            f'"{format_version(min_glibc)}" in the manifest; use the portable '
            "stub (drop --stub) or raise min_glibc"
        )

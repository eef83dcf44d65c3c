"""The ABI gate: before anything is compressed, every ELF file of a bundle must be built for the target
architecture, and, when the manifest sets `min_glibc`, need no newer glibc than that."""

from bundler.build.glibc import ELF_MAGIC, format_version, glibc_needs
from payload.elf import elf_machine
from payload.errors import UsageError


def check_files(members_by_group, arch, min_glibc=None):
    """Refuse a foreign or too new ELF file (UsageError naming it); return the files' glibc floor, or None."""
    floor = None
    for members in members_by_group.values():
        for member in members:
            if member.kind != "file":
                continue
            with open(member.source, "rb") as f:
                if f.read(len(ELF_MAGIC)) != ELF_MAGIC:
                    continue
                machine = elf_machine(f, member.path)
                if machine != arch:
                    raise UsageError(
                        f"file '{member.path}' is an ELF file for {machine}, but the bundle is for {arch}; give it a "
                        f"source built for {arch} ([file.source.{arch}] in the manifest)"
                    )
                needs = max(glibc_needs(f, member.path), default=None)
            if min_glibc and needs and needs > min_glibc:
                raise UsageError(
                    f"file '{member.path}' needs glibc {format_version(needs)}, newer than min_glibc = "
                    f'"{format_version(min_glibc)}" in the manifest; use a build '
                    "of it linked against an older glibc (or statically), or raise min_glibc"
                )
            floor = max(floor, needs) if floor and needs else (floor or needs)
    return floor


def check_stub_floor(stub_floor, min_glibc, stub_path):
    if min_glibc and stub_floor and stub_floor > min_glibc:
        raise UsageError(
            f"the stub {stub_path} needs glibc {format_version(stub_floor)}, newer than min_glibc = "
            f'"{format_version(min_glibc)}" in the manifest; use the portable '
            "stub (drop --stub) or raise min_glibc"
        )

"""The glibc floor of ELF files: the highest GLIBC_x.y symbol version they need (SHT_GNU_verneed), and the
shared libraries they name (DT_NEEDED, DT_SONAME of SHT_DYNAMIC).

A PyInstaller one-file stub carries its shared libraries (libpython, libcrypto, ...) zlib-compressed inside its
CArchive (the `pydata` section), so the stub's floor is the highest of the bootloader's and theirs. The release a
stub was built on is never assumed: the floor is read from the bytes.
"""

import io
import re
import struct
import zlib

from payload import lazylibs, rules
from payload.elf import find_section, section_table
from payload.errors import IntegrityError
from payload.layout import BOOTLOADER, LIBC

ELF_MAGIC = b"\x7fELF"
_SHT_GNU_VERNEED = 0x6FFFFFFE
_SHT_DYNAMIC = 6
_DT_NULL, _DT_NEEDED, _DT_SONAME = 0, 1, 14
_GLIBC = re.compile(rb"GLIBC_(\d+)\.(\d+)(?:\.(\d+))?\Z")

# PyInstaller's CArchive (PyInstaller/archive/readers.py): a cookie at its end, a table of contents.
_COOKIE_MAGIC = b"MEI\014\013\012\013\016"
_COOKIE = struct.Struct("!8sIIII64s")
_TOC_ENTRY = struct.Struct("!IIIIBc")


def parse_version(text):
    """'2.31' -> (2, 31); None when it is not MAJOR.MINOR."""
    return rules.glibc_version(str(text).strip())


def format_version(version):
    return f"{version[0]}.{version[1]}" if version else "none"


def _string_at(table, offset):
    end = table.find(b"\0", offset)
    return table[offset:end] if 0 <= offset < len(table) and end >= 0 else b""


def glibc_needs(f, where):
    """The set of (major, minor) GLIBC versions the ELF file `f` needs; empty for a static or non-glibc file."""
    order, sections = section_table(f, where)
    needs = set()
    verneed = struct.Struct(order + "HHIII")  # vn_version, vn_cnt, vn_file, vn_aux, vn_next
    vernaux = struct.Struct(order + "IHHII")  # vna_hash, vna_flags, vna_other, vna_name, vna_next
    for name, kind, offset, size, link in sections:
        if kind != _SHT_GNU_VERNEED:
            continue
        if not 0 < link < len(sections):
            raise _damaged(where, f"section {name} links to no string table")
        data = _read(f, offset, size, where)
        strings = _read(f, sections[link][2], sections[link][3], where)
        at = 0
        for _ in range(size // verneed.size + 1):  # bounded: a looping chain in a damaged file cannot hang
            if at + verneed.size > len(data):
                raise _damaged(where, f"version needs run past section {name}")
            _, count, _, aux, step = verneed.unpack_from(data, at)
            here = at + aux
            for _ in range(count):
                if here + vernaux.size > len(data):
                    raise _damaged(where, f"version needs run past section {name}")
                _, _, _, name_at, aux_step = vernaux.unpack_from(data, here)
                match = _GLIBC.match(_string_at(strings, name_at))
                if match:
                    needs.add((int(match.group(1)), int(match.group(2))))
                here += aux_step
            if not step:
                break
            at += step
    return needs


def linked_names(f, where):
    """(its own soname or None, [the sonames it needs, in order]) of the ELF file `f`, from its dynamic section;
    (None, []) for a static file."""
    order, sections = section_table(f, where)
    f.seek(4)
    entry = struct.Struct(order + ("qQ" if f.read(1) == b"\x02" else "iI"))  # d_tag, d_val of ELFCLASS64 / 32
    soname, needed = None, []
    for name, kind, offset, size, link in sections:
        if kind != _SHT_DYNAMIC:
            continue
        if not 0 < link < len(sections):
            raise _damaged(where, f"section {name} links to no string table")
        data = _read(f, offset, size - size % entry.size, where)
        strings = _read(f, sections[link][2], sections[link][3], where)
        for tag, value in entry.iter_unpack(data):
            if tag == _DT_NULL:
                break
            if tag in (_DT_NEEDED, _DT_SONAME):
                text = _string_at(strings, value).decode("utf-8", "replace")
                if not text:
                    raise _damaged(where, f"a name in section {name} lies outside its string table")
                if tag == _DT_NEEDED:
                    needed.append(text)
                else:
                    soname = text
    return soname, needed


def _read(f, offset, size, where):
    f.seek(offset)
    data = f.read(size)
    if len(data) != size:
        raise _damaged(where, "a section lies past the end of the file")
    return data


def _damaged(where, what):
    return IntegrityError(f"{where}: not a valid ELF file: {what}; the file is damaged or truncated")


def archive_elves(f, where):
    """(name, bytes) of every ELF file inside the PyInstaller CArchive of the stub `f` (its `pydata` section);
    none when it has no such archive."""
    span = find_section(f, "pydata")
    if span is None:
        return []
    data = _read(f, span[0], span[1], where)
    cookie_at = data.rfind(_COOKIE_MAGIC)
    if cookie_at < 0 or cookie_at + _COOKIE.size > len(data):
        return []  # no archive (a stand-in stub): only the bootloader's own needs count
    _, length, toc_at, toc_size, _, _ = _COOKIE.unpack_from(data, cookie_at)
    start = cookie_at + _COOKIE.size - length
    toc = data[start + toc_at : start + toc_at + toc_size]
    if start < 0 or len(toc) != toc_size:
        raise IntegrityError(f"{where}: its PyInstaller archive is damaged; rebuild the stub")
    elves = []
    at = 0
    while at + _TOC_ENTRY.size <= len(toc):
        size, offset, stored, _, compressed, _ = _TOC_ENTRY.unpack_from(toc, at)
        if size < _TOC_ENTRY.size:
            raise IntegrityError(f"{where}: its PyInstaller archive is damaged; rebuild the stub")
        name = toc[at + _TOC_ENTRY.size : at + size].rstrip(b"\0").decode("utf-8", "replace")
        at += size
        member = data[start + offset : start + offset + stored]
        head = zlib.decompressobj().decompress(member, len(ELF_MAGIC)) if compressed else member[: len(ELF_MAGIC)]
        if head == ELF_MAGIC:
            elves.append((name, zlib.decompress(member) if compressed else member))
        elif name == lazylibs.BLOB:  # the libraries unpacked on demand count as much as the others
            blob = zlib.decompress(member) if compressed else member
            elves += [(path, body) for path, _, body in lazylibs.unpack(blob, where) if body[:4] == ELF_MAGIC]
    return elves


def floor_of_file(path):
    """The highest GLIBC version the ELF file at `path` needs, or None."""
    with open(path, "rb") as f:
        return max(glibc_needs(f, str(path)), default=None)


def stub_floor(path):
    """(floor, {file: floor}) of a PyInstaller stub: the bootloader and every ELF file inside its archive. A stub
    that carries its C library (a `libc` section) needs no glibc of the system: its floor is None."""
    with open(path, "rb") as f:
        carries_libc = find_section(f, LIBC) is not None
        bootloader = find_section(f, BOOTLOADER)  # behind the launcher, which is static
        if bootloader is not None:
            f.seek(bootloader[0])
            needs = glibc_needs(io.BytesIO(f.read(bootloader[1])), f"the bootloader in {path}")
        else:
            needs = glibc_needs(f, str(path))
        floors = {"bootloader": max(needs, default=None)}
        for name, data in archive_elves(f, str(path)):
            floors[name] = max(glibc_needs(io.BytesIO(data), f"{name} in {path}"), default=None)
    return None if carries_libc else max((v for v in floors.values() if v), default=None), floors


def kernel_floor(carried):
    """The oldest Linux (major, minor) the carried C library ([(name, bytes)], static.carried_libc) runs on: the
    ABI tag note of its libc; None when it has none."""
    files = dict(carried)
    libc = files.get("libc.so.6")
    if libc is None:
        return None
    with io.BytesIO(libc) as f:
        note = find_section(f, ".note.ABI-tag")
        if note is None:
            return None
        f.seek(note[0])
        data = f.read(note[1])
    order = "<" if libc[5] == 1 else ">"
    namesz, descsz, _ = struct.unpack_from(order + "III", data)
    at = 12 + (namesz + 3) // 4 * 4
    if descsz < 16 or at + 16 > len(data):
        return None
    _, major, minor, _ = struct.unpack_from(order + "IIII", data, at)
    return major, minor


def describe_floor(path):
    """What a device needs of its system to start the stub at `path`: "glibc 2.31", or "none; Linux 3.2 or later"."""
    from bundler.stubs.static import carried_libc

    carried = carried_libc(path)
    kernel = kernel_floor(carried) if carried else None
    if kernel is not None:
        return f"none (it carries its own); Linux {kernel[0]}.{kernel[1]} or later"
    return format_version(stub_floor(path)[0])

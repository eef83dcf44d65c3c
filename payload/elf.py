"""Find and add ELF sections, for any ELF class, byte order and machine.

The payload lives in its own section placed just before PyInstaller's `pydata` section, so the bootloader,
which looks for its archive from the end of the file, never reads it (docs/format.md, "1. The file").
GNU objcopy refuses stubs of foreign architectures, hence this small writer: it copies everything up to the
`pydata` data, writes the new section, then moves the rest (pydata, trailing sections, a new .shstrtab and the
section header table) by a whole number of alignments. Loaded segments and program headers are never touched.
"""

import math
import os
import struct

from payload import arches
from payload.errors import HostError, IntegrityError, UsageError
from payload.fs import CHUNK

_MAGIC = b"\x7fELF"
_IDENT_SIZE = 16
_MAX_ALIGN = 1 << 20  # far above what any section outside a loaded segment asks for

_SHT_PROGBITS = 1
_SHT_SYMTAB = 2
_SHT_RELA = 4
_SHT_NOBITS = 8
_SHT_REL = 9
_SHT_DYNSYM = 11
_SHT_GROUP = 17
_SHT_SYMTAB_SHNDX = 18
_SHF_INFO_LINK = 0x40
_SHN_LORESERVE = 0xFF00
_SHN_XINDEX = 0xFFFF

# Machines no bundle is built for, named in messages only (the bundle architectures are in payload/arches.py).
_OTHER_MACHINES = {(3, False): "i386", (243, False): "riscv32"}

# Field order of a section header is the same in both classes; only the widths differ.
_SH_NAME, _SH_TYPE, _SH_FLAGS, _SH_ADDR, _SH_OFFSET, _SH_SIZE, _SH_LINK, _SH_INFO, _SH_ALIGN = range(9)

_CLASSES = {
    # class byte: (header fields after e_ident, section header, program header (type, offset, filesz positions),
    #              symbol (position of st_shndx), offset limit)
    1: ("HHIIIIIHHHHHH", "IIIIIIIIII", ("IIIIIIII", 0, 1, 4), ("IIIBBH", 5), 0xFFFFFFFF),
    2: ("HHIQQQIHHHHHH", "IIQQQQIIQQ", ("IIQQQQQQ", 0, 2, 5), ("IBBHQQ", 3), 0xFFFFFFFFFFFFFFFF),
}
# Positions in the header fields (after e_ident).
_E_MACHINE, _E_PHOFF, _E_SHOFF, _E_PHENTSIZE, _E_PHNUM, _E_SHENTSIZE, _E_SHNUM, _E_SHSTRNDX = 1, 4, 5, 8, 9, 10, 11, 12


def _damaged(where, what):
    return IntegrityError(f"{where}: not a valid ELF file: {what}; the file is damaged or truncated, copy it again")


class _Elf:
    """The headers of one ELF file: its header fields, section headers and section names."""

    def __init__(self, f, where, with_sections=True):
        self.f = f
        self.where = where
        f.seek(0, os.SEEK_END)
        self.file_size = f.tell()
        ident = self.read(0, _IDENT_SIZE, "ELF identification")
        if ident[:4] != _MAGIC:
            raise _damaged(where, "no ELF magic at the start")
        if ident[4] not in _CLASSES:
            raise _damaged(where, f"unknown ELF class {ident[4]}")
        if ident[5] not in (1, 2):
            raise _damaged(where, f"unknown byte order {ident[5]}")
        self.ident = ident
        self.is64 = ident[4] == 2
        endian = "<" if ident[5] == 1 else ">"
        header_fmt, sh_fmt, ph, sym, self.offset_limit = _CLASSES[ident[4]]
        self.header_struct = struct.Struct(endian + header_fmt)
        self.sh_struct = struct.Struct(endian + sh_fmt)
        self.ph_struct = struct.Struct(endian + ph[0])
        self.ph_fields = ph[1:]
        self.sym_struct = struct.Struct(endian + sym[0])
        self.sym_shndx = sym[1]
        self.word = struct.Struct(endian + "I")
        self.header = list(self.header_struct.unpack(self.read(_IDENT_SIZE, self.header_struct.size, "ELF header")))
        self.sections = []
        self.names = []
        self.shstrndx = 0
        self.shstrtab = b""
        if with_sections and self.header[_E_SHOFF]:
            self._read_sections()

    @property
    def machine(self):
        return self.header[_E_MACHINE]

    def read(self, offset, size, what):
        if offset + size > self.file_size:
            raise _damaged(
                self.where, f"{what} at {offset}+{size} lies past the end of the file ({self.file_size} bytes)"
            )
        self.f.seek(offset)
        data = self.f.read(size)
        if len(data) != size:
            raise _damaged(self.where, f"short read of {what}")
        return data

    def _read_sections(self):
        shoff, entsize = self.header[_E_SHOFF], self.header[_E_SHENTSIZE]
        if entsize != self.sh_struct.size:
            raise _damaged(self.where, f"section header size {entsize}, expected {self.sh_struct.size}")
        count, shstrndx = self.header[_E_SHNUM], self.header[_E_SHSTRNDX]
        if count == 0 or shstrndx == _SHN_XINDEX:
            # Extended numbering: the real values sit in section header 0.
            first = self.sh_struct.unpack(self.read(shoff, entsize, "section header 0"))
            count = count or first[_SH_SIZE]
            shstrndx = first[_SH_LINK] if shstrndx == _SHN_XINDEX else shstrndx
        table = self.read(shoff, count * entsize, "section header table")
        self.sections = [list(fields) for fields in self.sh_struct.iter_unpack(table)]
        if not 0 < shstrndx < count:
            raise _damaged(self.where, f"section name table index {shstrndx} out of range ({count} sections)")
        self.shstrndx = shstrndx
        strtab = self.sections[shstrndx]
        if strtab[_SH_TYPE] == _SHT_NOBITS:
            raise _damaged(self.where, "section name table has no data")
        self.shstrtab = self.read(strtab[_SH_OFFSET], strtab[_SH_SIZE], "section name table")
        self.names = [self._name(index, sh[_SH_NAME]) for index, sh in enumerate(self.sections)]

    def _name(self, index, offset):
        end = self.shstrtab.find(b"\0", offset)
        if offset >= len(self.shstrtab) or end < 0:
            raise _damaged(self.where, f"name of section {index} lies outside the section name table")
        return self.shstrtab[offset:end].decode("utf-8", "replace")

    def index_of(self, name):
        try:
            return self.names.index(name)
        except ValueError:
            return None

    def has_data(self, sh):
        return sh[_SH_TYPE] != _SHT_NOBITS and sh[_SH_SIZE] > 0

    def segments(self):
        """(index, offset, filesz) of every program header."""
        phoff, entsize, count = self.header[_E_PHOFF], self.header[_E_PHENTSIZE], self.header[_E_PHNUM]
        if not count:
            return []
        if entsize != self.ph_struct.size:
            raise _damaged(self.where, f"program header size {entsize}, expected {self.ph_struct.size}")
        table = self.read(phoff, count * entsize, "program header table")
        _, offset_at, filesz_at = self.ph_fields
        return [(index, ph[offset_at], ph[filesz_at]) for index, ph in enumerate(self.ph_struct.iter_unpack(table))]

    def section_indexes_used(self, index):
        """Section indexes that the contents of a symbol table or group section refer to."""
        sh = self.sections[index]
        data = self.read(sh[_SH_OFFSET], sh[_SH_SIZE], f"section {self.names[index]}")
        if sh[_SH_TYPE] in (_SHT_SYMTAB, _SHT_DYNSYM):
            usable = len(data) - len(data) % self.sym_struct.size
            return [sym[self.sym_shndx] for sym in self.sym_struct.iter_unpack(data[:usable])]
        usable = len(data) - len(data) % 4
        words = [word for (word,) in self.word.iter_unpack(data[:usable])]
        return words[1:] if sh[_SH_TYPE] == _SHT_GROUP else words


def _where(f):
    return getattr(f, "name", None) or "ELF stream"


def find_section(f, name):
    """(file offset, size) of the section `name` in the seekable binary file `f`, or None when it has none."""
    elf = _Elf(f, _where(f))
    index = elf.index_of(name)
    if index is None:
        return None
    sh = elf.sections[index]
    if sh[_SH_TYPE] == _SHT_NOBITS:
        raise _damaged(elf.where, f"section {name!r} has no data in the file")
    if sh[_SH_OFFSET] + sh[_SH_SIZE] > elf.file_size:
        raise _damaged(
            elf.where,
            f"section {name!r} at {sh[_SH_OFFSET]}+{sh[_SH_SIZE]} lies past the end of "
            f"the file ({elf.file_size} bytes)",
        )
    return sh[_SH_OFFSET], sh[_SH_SIZE]


def section_table(f, where=None):
    """The byte order ('<' or '>') and every section of the ELF file `f` as (name, type, offset, size, link),
    for build-side readers of other sections (bundler/build/glibc.py)."""
    elf = _Elf(f, where or _where(f))
    order = "<" if elf.ident[5] == 1 else ">"
    return order, [
        (name, sh[_SH_TYPE], sh[_SH_OFFSET], sh[_SH_SIZE], sh[_SH_LINK]) for name, sh in zip(elf.names, elf.sections)
    ]


def elf_machine(f, where=None):
    """The architecture of the ELF file `f`: amd64, arm64, arm, riscv64, i386, or machine-N for others."""
    elf = _Elf(f, where or _where(f), with_sections=False)
    key = (elf.machine, elf.is64)
    return arches.from_elf(*key) or _OTHER_MACHINES.get(key) or f"machine-{elf.machine}"


def _align_up(value, alignment):
    return (value + alignment - 1) // alignment * alignment


def insert_section(src_path, dst_path, name, content_path, before="pydata", align=16, replace=False):
    """Write dst_path: src_path with a new non-loaded section `name`, holding content_path's bytes, placed in
    the file (and in the section header table) right before the section `before` (None: after all of them).

    With `replace`, a section `name` that src_path already has right before `before` (as this function put it
    there) is replaced by the new content, larger or smaller; without, such a section is refused."""
    if not name or "\0" in name:
        raise UsageError(f"section name {name!r} is not valid: use a short non-empty name")
    if align < 1 or align & (align - 1):
        raise UsageError(f"section alignment {align!r} is not a power of two")
    for other in (src_path, content_path):
        if os.path.exists(dst_path) and os.path.exists(other) and os.path.samefile(dst_path, other):
            raise UsageError(f"{dst_path}: output would overwrite an input; choose another output path")
    with _open_input(src_path, "stub") as src, _open_input(content_path, "section content") as content:
        plan = _Plan(_Elf(src, src_path), name, before, align, os.fstat(content.fileno()).st_size, replace)
        try:
            with open(dst_path, "wb") as out:
                plan.write(src, content, out)
                os.fchmod(out.fileno(), os.fstat(src.fileno()).st_mode & 0o7777)
        except BaseException as e:
            _remove_quietly(dst_path)
            if isinstance(e, OSError):
                raise HostError(f"cannot write {dst_path}: {e.strerror or e}; check free space and permissions") from e
            raise


def _open_input(path, what):
    try:
        return open(path, "rb")
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror or e}") from e


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


class _Plan:
    """Where every piece of the new file goes, checked before a single byte is written."""

    def __init__(self, elf, name, before, align, content_size, replace=False):
        self.elf = elf
        self.content_size = content_size
        where = elf.where
        existing = elf.index_of(name)
        if existing is not None and not replace:
            raise UsageError(f"{where} already has a section {name!r}; start again from a fresh stub")
        for number, sh in enumerate(elf.sections):
            if elf.has_data(sh) and sh[_SH_OFFSET] + sh[_SH_SIZE] > elf.file_size:
                raise _damaged(where, f"section {elf.names[number]!r} lies past the end of the file")
        if before is None:  # after every section's data, and last in the table
            index, start = len(elf.sections), self._end_of_data()
        else:
            index = elf.index_of(before)
            if index is None or not elf.has_data(elf.sections[index]):
                raise UsageError(
                    f"{where} has no {before!r} section: it is not a PyInstaller one-file ELF stub; rebuild the stub"
                )
            start = elf.sections[index][_SH_OFFSET]
        self.start = start
        # Bytes from keep_end on are rewritten: the new content goes there, then everything from `start` moves.
        self.replacing = existing is not None
        self.insert_at = existing if self.replacing else index
        self.keep_end = self._replaced_span(name, before, existing, index) if self.replacing else start
        self._check_nothing_loaded_moves(before)
        if not self.replacing:  # a replaced section keeps its number: nothing is renumbered
            self._check_no_references_move(before)

        step = self._shift_step()
        self.content_offset = _align_up(self.keep_end, align)
        # Negative when the new content is smaller than what it replaces: the moved bytes then move down.
        self.shift = _align_up(self.content_offset + content_size - start, step)
        self.tail_end = self._tail_end()
        self.shstrtab = elf.shstrtab if self.replacing else elf.shstrtab + name.encode("utf-8") + b"\0"
        self.shstrtab_offset = self.tail_end + self.shift
        self.shoff = _align_up(self.shstrtab_offset + len(self.shstrtab), step)
        self.total_size = self.shoff + (len(elf.sections) + (0 if self.replacing else 1)) * elf.sh_struct.size
        if self.total_size > elf.offset_limit:
            raise UsageError(
                f"{where} is a 32-bit ELF, which cannot hold a file of {self.total_size} bytes; use a smaller payload"
            )
        sections = self._new_sections(align)
        self.header = elf.ident + elf.header_struct.pack(*self._new_header(sections))
        self.section_table = b"".join(elf.sh_struct.pack(*sh) for sh in sections)

    def _end_of_data(self):
        """Where the data of the sections ends (the section names aside, which are written again at the end)."""
        elf = self.elf
        names = elf.sections[elf.shstrndx]
        return max(
            (sh[_SH_OFFSET] + sh[_SH_SIZE] for sh in elf.sections if elf.has_data(sh) and sh is not names),
            default=_IDENT_SIZE + elf.header_struct.size,
        )

    def _replaced_span(self, name, before, existing, index):
        """Where the section being replaced starts; it must sit right before `before`, with nothing between."""
        elf = self.elf
        old = elf.sections[existing]
        if existing != index - 1 or not elf.has_data(old) or old[_SH_OFFSET] + old[_SH_SIZE] > self.start:
            raise UsageError(
                f"{elf.where}: section {name!r} is not right before {before!r}; this file was not written by bundler"
            )
        for number, sh in enumerate(elf.sections):
            if number != existing and elf.has_data(sh) and old[_SH_OFFSET] <= sh[_SH_OFFSET] < self.start:
                raise UsageError(
                    f"{elf.where}: section {elf.names[number]!r} lies between {name!r} and "
                    f"{before!r}; this file was not written by bundler"
                )
        return old[_SH_OFFSET]

    def _new_sections(self, align):
        """The section headers with the new one at `before`'s index: moved offsets and later indexes fixed."""
        elf, index = self.elf, self.insert_at
        sections = [list(sh) for sh in elf.sections]
        for sh in sections[1:]:
            if sh[_SH_OFFSET] >= self.start:
                sh[_SH_OFFSET] += self.shift
            if self.replacing:
                continue
            if index <= sh[_SH_LINK] < _SHN_LORESERVE:
                sh[_SH_LINK] += 1
            uses_info = sh[_SH_TYPE] in (_SHT_REL, _SHT_RELA) or sh[_SH_FLAGS] & _SHF_INFO_LINK
            if uses_info and index <= sh[_SH_INFO] < _SHN_LORESERVE:
                sh[_SH_INFO] += 1
        sections[elf.shstrndx][_SH_OFFSET] = self.shstrtab_offset
        sections[elf.shstrndx][_SH_SIZE] = len(self.shstrtab)
        for number, sh in enumerate(sections):
            if sh[_SH_OFFSET] > elf.offset_limit:
                raise _damaged(elf.where, f"section {elf.names[number]!r} has an offset out of range")
        new = [len(elf.shstrtab), _SHT_PROGBITS, 0, 0, self.content_offset, self.content_size, 0, 0, align, 0]
        if self.replacing:
            sections[index] = (
                elf.sections[index][:_SH_OFFSET]
                + [self.content_offset, self.content_size]
                + elf.sections[index][_SH_SIZE + 1 :]
            )
        else:
            sections.insert(index, new)
        return sections

    def _new_header(self, sections):
        """ELF header fields for the new table; counts too large for the header go to section 0 (gABI)."""
        elf = self.elf
        header = list(elf.header)
        header[_E_SHOFF] = self.shoff
        count = len(sections)
        if elf.header[_E_SHNUM] == 0 or count >= _SHN_LORESERVE:
            header[_E_SHNUM], sections[0][_SH_SIZE] = 0, count
        else:
            header[_E_SHNUM] = count
        shstrndx = elf.shstrndx + (1 if elf.shstrndx >= self.insert_at and not self.replacing else 0)
        if elf.header[_E_SHSTRNDX] == _SHN_XINDEX or shstrndx >= _SHN_LORESERVE:
            header[_E_SHSTRNDX], sections[0][_SH_LINK] = _SHN_XINDEX, shstrndx
        else:
            header[_E_SHSTRNDX] = shstrndx
        return header

    def _shift_step(self):
        """What the moved bytes' shift must be a multiple of, so every moved section stays aligned."""
        elf = self.elf
        step = 8 if elf.is64 else 4  # the section header table's own alignment
        for number, sh in enumerate(elf.sections):
            align = sh[_SH_ALIGN]
            # An alignment the section does not have in the source is not worth keeping.
            if sh[_SH_OFFSET] < self.start or align <= 1 or sh[_SH_OFFSET] % align:
                continue
            if align > _MAX_ALIGN:
                raise _damaged(elf.where, f"section {elf.names[number]!r} asks for an alignment of {align} bytes")
            step = step * align // math.gcd(step, align)
        return step

    def _check_nothing_loaded_moves(self, before):
        elf, start = self.elf, self.keep_end
        header_end = elf.header[_E_PHOFF] + elf.header[_E_PHNUM] * elf.header[_E_PHENTSIZE]
        if elf.header[_E_PHNUM] and header_end > start:
            raise UsageError(
                f"{elf.where}: the program headers lie after section {before!r}; this stub cannot take a payload"
            )
        for number, offset, filesz in elf.segments():
            if filesz and offset + filesz > start:
                raise UsageError(
                    f"{elf.where}: section {before!r} lies inside segment {number}, which is loaded "
                    "at run time; this stub cannot take a payload"
                )
        for index, sh in enumerate(elf.sections):
            if elf.has_data(sh) and sh[_SH_OFFSET] < start < sh[_SH_OFFSET] + sh[_SH_SIZE]:
                raise UsageError(
                    f"{elf.where}: section {elf.names[index]!r} overlaps the start of section "
                    f"{before!r}; this stub cannot take a payload"
                )

    def _check_no_references_move(self, before):
        # Headers from `before` on shift by one; sh_link/sh_info are renumbered, but symbols are not rewritten.
        elf = self.elf
        for index, sh in enumerate(elf.sections):
            if sh[_SH_TYPE] not in (_SHT_SYMTAB, _SHT_DYNSYM, _SHT_GROUP, _SHT_SYMTAB_SHNDX):
                continue
            used = [i for i in elf.section_indexes_used(index) if self.insert_at <= i < _SHN_LORESERVE]
            if used:
                raise UsageError(
                    f"{elf.where}: {elf.names[index]} refers to sections from {before!r} on, which "
                    "would be renumbered; rebuild the stub with PyInstaller --strip"
                )

    def _tail_end(self):
        """End of the bytes to move. The old section header table and .shstrtab are left behind when they are
        the last things in the file, since new ones are written after the moved bytes."""
        elf = self.elf
        end = elf.file_size
        data = [sh for sh in elf.sections if elf.has_data(sh)]
        table_size = len(elf.sections) * elf.sh_struct.size
        if (
            elf.header[_E_SHOFF] >= self.start
            and elf.header[_E_SHOFF] + table_size == end
            and all(sh[_SH_OFFSET] + sh[_SH_SIZE] <= elf.header[_E_SHOFF] for sh in data)
        ):
            end = elf.header[_E_SHOFF]
        names = elf.sections[elf.shstrndx]
        others = [sh for sh in data if sh is not names]
        if (
            names[_SH_OFFSET] >= self.start
            and names[_SH_OFFSET] + names[_SH_SIZE] <= end
            and all(sh[_SH_OFFSET] + sh[_SH_SIZE] <= names[_SH_OFFSET] for sh in others)
        ):
            end = names[_SH_OFFSET]
        return end

    def write(self, src, content, out):
        out.write(self.header)
        _copy(src, len(self.header), self.keep_end - len(self.header), out, self.elf.where)
        _pad_to(out, self.content_offset)
        _copy(content, 0, self.content_size, out, "section content")
        if content.read(1):
            raise UsageError("section content grew while being copied; do not change it during the build")
        _pad_to(out, self.start + self.shift)
        _copy(src, self.start, self.tail_end - self.start, out, self.elf.where)
        out.write(self.shstrtab)
        _pad_to(out, self.shoff)
        out.write(self.section_table)
        out.flush()
        if out.tell() != self.total_size:
            raise IntegrityError(f"internal error: wrote {out.tell()} bytes, planned {self.total_size}")


def _pad_to(out, offset):
    out.write(b"\0" * (offset - out.tell()))


def _copy(src, offset, size, out, where):
    src.seek(offset)
    while size > 0:
        chunk = src.read(min(size, CHUNK))
        if not chunk:
            raise UsageError(f"{where} shrank while being copied; do not change it during the build")
        out.write(chunk)
        size -= len(chunk)


def stub_pieces(f, name, before="pydata"):
    """The pieces whose sha256 is a bundle's `stub_sha256` (docs/format.md, section 1): bytes, or (offset, length)
    ranges of `f`, which together are the file without its section `name` (the payload) and the padding up to
    `before`, with every field that depends on the section's size written the same way: the same pieces for every
    bundle of one stub. Raises IntegrityError when a byte of the file would be covered by neither."""
    elf = _Elf(f, _where(f))
    where = elf.where
    own, nxt = elf.index_of(name), elf.index_of(before)
    if own is None or nxt is None or not elf.has_data(elf.sections[nxt]):
        raise _damaged(where, f"no {name!r} section before a {before!r} section")
    start, size = elf.sections[own][_SH_OFFSET], elf.sections[own][_SH_SIZE]
    archive = elf.sections[nxt][_SH_OFFSET]
    if archive < start + size:
        raise _damaged(where, f"section {before!r} does not follow section {name!r}")
    header_size = _IDENT_SIZE + elf.header_struct.size
    table_size = len(elf.sections) * elf.sh_struct.size
    if elf.header[_E_PHNUM] and elf.header[_E_PHOFF] + elf.header[_E_PHNUM] * elf.header[_E_PHENTSIZE] > start:
        raise _damaged(where, "the program headers reach the payload section")
    for number, offset, filesz in elf.segments():
        if filesz and offset + filesz > start:
            raise _damaged(where, f"segment {number} reaches the payload section")
    end = archive
    for number, sh in enumerate(elf.sections):
        if number == own or not elf.has_data(sh):
            continue
        if sh[_SH_OFFSET] < archive and sh[_SH_OFFSET] + sh[_SH_SIZE] > start:
            raise _damaged(where, f"section {elf.names[number]!r} lies inside the payload section or after it")
        if sh[_SH_OFFSET] >= archive:
            end = max(end, sh[_SH_OFFSET] + sh[_SH_SIZE])
    shoff = elf.header[_E_SHOFF]
    if shoff < end or shoff + table_size > elf.file_size or start < header_size:
        raise _damaged(where, "the section header table does not follow the sections")
    for gap_start, gap_end in ((start + size, archive), (end, shoff)):
        _check_zeros(elf, gap_start, gap_end)
    header = list(elf.header)
    header[_E_SHOFF] = 0
    sections = [list(sh) for sh in elf.sections]
    for number, sh in enumerate(sections):
        if number == own:
            sh[_SH_OFFSET] = sh[_SH_SIZE] = 0
        elif number and sh[_SH_OFFSET] >= archive:
            sh[_SH_OFFSET] -= archive
    return [
        elf.ident + elf.header_struct.pack(*header),
        (header_size, start - header_size),
        (archive, end - archive),
        b"".join(elf.sh_struct.pack(*sh) for sh in sections),
        (shoff + table_size, elf.file_size - shoff - table_size),
    ]


def _check_zeros(elf, start, end):
    elf.f.seek(start)
    left = end - start
    while left > 0:
        chunk = elf.f.read(min(left, CHUNK))
        if not chunk or chunk.count(0) != len(chunk):
            raise _damaged(elf.where, f"bytes {start} to {end}, padding around the payload, are not zeros")
        left -= len(chunk)

"""The sha256 of a bundle's stub: its code, the bytes outside the payload section, in a form that is the same for
every bundle of one stub (`stub_sha256`, docs/format.md section 1).

The content index records it, so the bundle id and a signature cover the bootloader, the program headers,
PyInstaller's archive (`pydata`) and the section header table. The fields that depend on the section's size (the
section table's offset, the payload section's size, the offsets of the sections after it) are written the same
way whatever the section holds, so a repack or a split (a new section of another size) keeps the same value, and
the writer knows it before it writes: it is the stub's. payload/elf.py `stub_pieces` says which bytes and checks
that every other byte of the file is either the payload section or zero padding. Parts a split bundle keeps beside
it are covered by the encoding table and the entries' sha256s.
"""

import hashlib

from payload.errors import IntegrityError
from payload.fs import CHUNK


def stub_sha256(f, section="bundle"):
    """The hex `stub_sha256` of the bundle executable (or a stub with an empty section `section`) open as `f`."""
    from payload.elf import stub_pieces

    sha = hashlib.sha256()
    for piece in stub_pieces(f, section):
        if isinstance(piece, bytes):
            sha.update(piece)
            continue
        offset, left = piece
        f.seek(offset)
        while left > 0:
            chunk = f.read(min(left, CHUNK))
            if not chunk:
                raise IntegrityError(
                    f"{getattr(f, 'name', 'the bundle')}: the file ends inside its stub; copy it again"
                )
            sha.update(chunk)
            left -= len(chunk)
    return sha.hexdigest()


def check_outside(payload, f):
    """Raise IntegrityError unless the executable's stub is the one the content index records."""
    expected = payload.index.stub_sha256
    actual = stub_sha256(f)
    if actual != expected:
        raise IntegrityError(
            f"{payload.path}: the stub (bootloader, ELF headers, PyInstaller's archive) has sha256 {actual}, the "
            f"index records {expected}; the file is damaged or its stub was replaced, copy it again (and check the "
            "copy with `sha256sum -c` and the .sha256 file written beside it)"
        )
    return True

"""The sha256 of a bundle executable's bytes outside its payload section: the bootloader, the ELF headers and
section header table, PyInstaller's archive (`pydata`) and the padding between sections.

The index records it (`outside_sha256`), so with the index's own checksum and the group and entry sha256s every
byte of the executable is covered. The payload section's content (header, index, signature, data) is left out
whole: the index cannot hash itself. Its size, and so the section table that the hash covers, does depend on the
index length; the field has a fixed length (64 hex digits), so the build writes the executable once with
PLACEHOLDER, hashes the bytes outside the section, and puts the real value in place: same length, same layout.
Only the executable file counts: parts a split bundle keeps beside it are covered by their own checksums.
"""

import hashlib

from payload.errors import IntegrityError
from payload.fs import CHUNK

PLACEHOLDER = "0" * 64


def _hash_range(f, start, end, sha):
    f.seek(start)
    left = end - start
    while left > 0:
        chunk = f.read(min(left, CHUNK))
        if not chunk:
            break
        sha.update(chunk)
        left -= len(chunk)


def outside_sha256(f, section_offset, section_size):
    """The hex sha256 of the file `f` with bytes [section_offset, section_offset + section_size) left out."""
    sha = hashlib.sha256()
    _hash_range(f, 0, section_offset, sha)
    f.seek(0, 2)
    _hash_range(f, section_offset + section_size, f.tell(), sha)
    return sha.hexdigest()


def check_outside(payload, f):
    """Raise IntegrityError unless the bytes outside the payload section are the ones the index records.
    Returns False when the index records nothing to check (a bundle built before the field existed)."""
    expected = payload.index.outside_sha256
    if expected is None:
        return False
    actual = outside_sha256(f, payload.section_offset, payload.section_size)
    if actual != expected:
        raise IntegrityError(
            f"{payload.path}: the bytes outside the payload section (bootloader, ELF headers, PyInstaller's archive) "
            f"have sha256 {actual}, the index records {expected}; the file is damaged, copy it again (and check the "
            "copy with `sha256sum -c` and the .sha256 file written beside it)"
        )
    return True

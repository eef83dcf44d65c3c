"""The payload section: a fixed 104-byte header, the content index, an optional signature block, the encoding
table, then the groups.

The byte layout is specified in docs/format.md ("The payload section"). The header carries the sha256 of the
content index (the bundle id) and of the encoding table, so damage to either is caught before it is parsed; the
content index carries the sha256 of every entry and of the stub's code, so the bundle id covers every byte a
device installs and runs, while the table (how the bytes are packed) can change without changing it.

A split bundle (its index lists `parts`) keeps the data area in its parts beside the executable instead
(payload/parts.py, docs/format.md "Split bundles"); its section ends after the signature.
"""

import struct

from payload import FORMAT_VERSION, small_sha
from payload.errors import IntegrityError
from payload.index import Index

# The signature block's size (payload/signing.py builds it): here, so that a start imports no signing code.
BLOCK_SIZE = 104
SECTION = "bundle"
BOOTLOADER = "bootloader"  # PyInstaller's bootloader, which the launcher at the front of the file runs
LIBC = "libc"  # a static stub's C library (bundler/stubs/static.py), before the bootloader that runs on it
ARCHIVE = "pydata"  # PyInstaller's archive, last: the payload section goes right before it
MAGIC = b"BUNDLER\x00"
_HEADER = struct.Struct("<8sIIQQQ32s32s")
_FORMAT_AT = struct.Struct("<8sI")  # magic and format: the same place in every format's header
MAX_INDEX = 64 << 20  # the content index, and the encoding table
OLDER_FORMATS = (1, 2, 3)
MAX_HEAD = _HEADER.size + 2 * MAX_INDEX + BLOCK_SIZE  # a section's head: header, index, signature, table


class Payload:
    """An opened payload: its parsed index, and where its data area starts in the file."""

    def __init__(self, path, index, index_bytes, signature, data_offset, data_size, section=(0, 0), table_bytes=b""):
        self.path = path
        self.index = index
        self.index_bytes = index_bytes  # the content index as stored: its sha256 is the bundle id
        self.table_bytes = table_bytes
        self.signature = signature
        self.data_offset = data_offset
        self.data_size = data_size
        self.section_offset, self.section_size = section  # where the whole payload section lies in the file

    @property
    def bundle_id(self):
        return small_sha.sha256(self.index_bytes).hexdigest()

    @property
    def split(self):
        return bool(self.index.parts)

    def open_data(self, f):
        """A reader of the data area at the offsets it has in `f`: `f` itself, or the parts of a split bundle
        (a missing or short part is named here, before anything is read)."""
        from payload.parts import Whole, open_parts

        return open_parts(self) if self.split else Whole(f)


def header_and_index(index, signature=b"", index_bytes=None):
    """The bytes that precede the data area in the payload section; `index_bytes`: the content index as stored, when
    it is copied from a bundle rather than written anew."""
    content = index.to_bytes() if index_bytes is None else index_bytes
    return head_bytes(content, signature, index.table_bytes(), index.payload_size)


def head_bytes(index_bytes, signature, table_bytes, data_size):
    """The payload section up to its data area (header, content index as stored, signature block, encoding table):
    the same bytes a file holds there, since every header field follows from these."""
    header = _HEADER.pack(
        MAGIC,
        FORMAT_VERSION,
        len(signature),
        len(index_bytes),
        len(table_bytes),
        data_size,
        small_sha.sha256(index_bytes).digest(),
        small_sha.sha256(table_bytes).digest(),
    )
    return header + bytes(index_bytes) + bytes(signature) + bytes(table_bytes)


def write_section_content(out, index, group_paths, signature=b"", index_bytes=None):
    """Write the whole payload section to the binary file `out`; group_paths maps group name to its frame file."""
    import shutil  # build side only

    from payload.fs import CHUNK

    out.write(header_and_index(index, signature, index_bytes))
    for group in sorted(index.groups, key=lambda g: g.offset):
        with open(group_paths[group.name], "rb") as src:
            shutil.copyfileobj(src, out, CHUNK)


def _damaged(path, what):
    return IntegrityError(f"{path}: {what}; the file is damaged or truncated, copy it again")


def open_payload(path, f, check_signature=False):
    """Read and check the payload of the bundle executable open as `f` (`check_signature`: see read_payload)."""
    from payload.elf import find_section

    found = find_section(f, SECTION)
    if found is None:
        if find_section(f, "pydata") is None:  # not even a PyInstaller one-file program (or a damaged one)
            raise IntegrityError(
                f"{path} is not a bundle: it has no bundle payload and no PyInstaller archive; pass a "
                "file built by `bundler make` (or copy a damaged bundle again)"
            )
        raise IntegrityError(
            f"{path}: no bundle payload in this executable; it is a bare stub, build it with `bundler make`"
        )
    return read_payload(path, f, *found, check_signature=check_signature)


def read_head(path, data, check_signature=True):
    """Check and parse a payload section's head alone (header, content index, signature, encoding table; the data
    area elsewhere), as a registry serves it (payload/oci/artifact.py): a signature present is checked before
    anything is parsed. The Payload has no data area in any file."""
    import io

    return read_payload(
        path, io.BytesIO(data), 0, len(data), head_only=True, check_signature=check_signature, remote=True
    )


def _other_format(path, fmt, remote=False):
    """What to say of a bundle of another format; `remote`: `path` names a bundle on a registry, offered as an
    update (a running bundle cannot update to another format, but the bundle's own stub installs it)."""
    if remote:
        return (
            f"{path}: a bundle of payload format {fmt}; this program reads format {FORMAT_VERSION}, so it cannot "
            f"update to it or pull it: pull it with a bundler of format {fmt} (`bundler pull {path} --output FILE`) "
            "and run FILE once, its own stub installs it into the same root"
        )
    if fmt in OLDER_FORMATS:  # a bundle made by an older bundler: its own stub reads it (docs/format.md, section 9)
        return (
            f"{path}: payload format {fmt}, older than the format {FORMAT_VERSION} this program reads; ask the bundle "
            f"itself (`{path} --bundle-info`, `--bundle-verify`), or rebuild it with this bundler (its signature, if "
            "any, must be made again)"
        )
    return (
        f"{path}: payload format {fmt}, this program reads format {FORMAT_VERSION}; the file is damaged or made by a "
        "newer bundler: ask the bundle itself (`--bundle-info`, `--bundle-verify`), or use a newer bundler"
    )


def read_payload(path, f, offset, size, head_only=False, check_signature=False, remote=False):
    """Read and check the payload section that spans `size` bytes from `offset` of the file open as `f`
    (`head_only`: the head only, whatever the table says of its data area). Verify, then parse: the content index
    and the table against the header's sha256s and, with `check_signature`, a signature present against the raw
    content index, before either is parsed (docs/format.md, section 2)."""
    if size < _FORMAT_AT.size:
        raise _damaged(path, f"payload section is {size} bytes, too small for its header")
    f.seek(offset)
    magic, fmt = _FORMAT_AT.unpack(f.read(_FORMAT_AT.size))
    if magic != MAGIC:
        raise _damaged(path, "payload magic is wrong")
    if fmt != FORMAT_VERSION:
        raise IntegrityError(_other_format(path, fmt, remote))
    if size < _HEADER.size:
        raise _damaged(path, f"payload section is {size} bytes, too small for its header")
    f.seek(offset)
    _, _, sig_len, index_len, table_len, data_size, index_sha, table_sha = _HEADER.unpack(f.read(_HEADER.size))
    if index_len > MAX_INDEX or table_len > MAX_INDEX or sig_len not in (0, BLOCK_SIZE):
        raise _damaged(path, "payload header gives impossible sizes")
    head_size = _HEADER.size + index_len + sig_len + table_len
    if size not in (head_size + data_size, head_size):
        raise _damaged(path, f"payload header sizes do not add up to the section's {size} bytes")
    index_bytes = f.read(index_len)
    if len(index_bytes) != index_len or small_sha.sha256(index_bytes).digest() != index_sha:
        raise _damaged(path, "bundle index does not match its checksum")
    signature = f.read(sig_len)
    if len(signature) != sig_len:
        raise _damaged(path, "signature is cut short")
    table_bytes = f.read(table_len)
    if len(table_bytes) != table_len or small_sha.sha256(table_bytes).digest() != table_sha:
        raise _damaged(path, "encoding table does not match its checksum")
    if check_signature and signature:
        from payload.signing import check_block

        check_block(index_bytes, signature, path)
    index = Index.from_bytes(index_bytes, table_bytes, data_size)
    data_offset = offset + head_size
    if head_only:
        if size != head_size:
            raise _damaged(path, f"{size - head_size} bytes follow the encoding table")
        return Payload(path, index, index_bytes, signature, None, data_size, (None, head_size + data_size), table_bytes)
    if size != (head_size if index.parts else head_size + data_size):
        raise _damaged(
            path,
            f"payload section is {size} bytes, its table says "
            f"{'the data area is in parts' if index.parts else 'the data area is in the section'}",
        )
    f.seek(0, 2)
    if not index.parts and f.tell() < data_offset + data_size:
        raise _damaged(path, "file ends inside the payload")
    return Payload(path, index, index_bytes, signature, data_offset, data_size, (offset, size), table_bytes)

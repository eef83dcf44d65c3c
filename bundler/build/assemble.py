"""Write the bundle executable: the stub with the payload section inserted before PyInstaller's `pydata`,
written atomically with its run bit, plus `<output>.sha256` in `sha256sum -c` format."""

import hashlib
from pathlib import Path

from bundler import __version__
from bundler.cache import file_sha256
from bundler.media.outputs import remove_stale_parts, write_checksum
from payload import fs
from payload.elf import insert_section
from payload.errors import BundleError, IntegrityError
from payload.fs import CHUNK
from payload.index import Entry, Frame, Group, Index
from payload.layout import SECTION, open_payload, write_section_content
from payload.outside import check_outside, stub_sha256
from payload.rules import PULL_BACKGROUND


def build_index(
    identity,
    groups,
    images=(),
    require_key=None,
    bundler_version=__version__,
    min_glibc=None,
    min_glibc_file=None,
    stub_sha256=None,
):
    """The index for compressed `groups` laid out one after another in the data area, each group's frames back to
    back; `stub_sha256` is the stub's (stub_sha256_of)."""
    index_groups, entries = lay_out(groups)
    return Index(
        identity["name"],
        identity["version"],
        identity["variant"],
        identity["arch"],
        bundler_version,
        identity["entrypoint"],
        index_groups,
        entries,
        images,
        require_key,
        stub_sha256,
        description=identity.get("description"),
        min_glibc=min_glibc,
        update_repository=identity.get("update_repository"),
        min_glibc_file=min_glibc_file,
        pull=identity.get("pull") or PULL_BACKGROUND,
        update_policy=identity.get("update_policy"),
    )


def lay_out(groups):
    """(index groups, entries in stream order) for compressed `groups` laid out back to back in the data area."""
    index_groups, entries = [], []
    offset = 0
    for group in groups:
        frames = []
        for frame in group.frames:
            frames.append(Frame(offset, frame.csize, frame.size, frame.sha256, frame.count))
            offset += frame.csize
        index_groups.append(Group(group.name, frames))
        position = 0
        for m in group.members:
            entries.append(Entry(m.path, m.kind, m.mode, m.size, m.sha256, group.name, position))
            position += m.size
    return index_groups, entries


def stub_sha256_of(stub, beside):
    """The `stub_sha256` every bundle of `stub` records (payload/outside.py): the stub's, with an empty payload
    section put in (scratch files beside `beside`, removed)."""
    Path(beside).parent.mkdir(parents=True, exist_ok=True)
    empty, scratch = fs.temp_name(Path(str(beside) + ".empty")), fs.temp_name(Path(str(beside) + ".stub"))
    try:
        open(empty, "wb").close()
        insert_section(str(stub), scratch, SECTION, empty)
        with open(scratch, "rb") as f:
            return stub_sha256(f)
    finally:
        fs.safe_unlink(empty)
        fs.safe_unlink(scratch)


def check_as_device(index):
    """Parse the index with the device's own reader: whatever the build accepts, every device accepts."""
    try:
        Index.from_bytes(index.to_bytes(), index.table_bytes(), index.payload_size)
    except IntegrityError as exc:
        raise BundleError(
            f"internal error: every device would refuse the index this build made ({exc}); nothing was "
            "written, please report this"
        ) from None


def _no_signature(index_bytes):
    return b""


def write_bundle(stub, index, groups, output, sign=_no_signature, signature=None, index_bytes=None, replace=False):
    """Write the executable to `output` and its checksum file beside it; returns the executable's sha256.

    Both appear whole or not at all: the executable first, then its checksum file. `sign(index_bytes)` gives
    the signature block; a repack passes the content index bytes and the `signature` it keeps instead, and
    `replace`: `stub` is then a bundle whose payload section is replaced."""
    if index.stub_sha256 is None:
        index.stub_sha256 = stub_sha256_of(stub, output)
    check_as_device(index)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    frames = {g.name: g.path for g in groups}
    content = fs.temp_name(output)  # the section's bytes, a scratch file beside the output
    index_bytes = index.to_bytes() if index_bytes is None else index_bytes
    try:
        with open(content, "wb") as out:
            write_section_content(
                out, index, frames, sign(index_bytes) if signature is None else signature, index_bytes
            )
        with fs.atomic_path(output, mode=0o755) as tmp:
            insert_section(str(stub), tmp, SECTION, content, replace=replace)
            check_written(tmp, index, index_bytes)
            digest = file_sha256(tmp)
        write_checksum(output, digest)
    finally:
        fs.safe_unlink(content)
    remove_stale_parts(output.parent, output.name)  # of an earlier split build of this name
    return digest


def check_written(path, index, index_bytes=None):
    """Read back what was written: the index the device will read, its stub, and every frame's bytes against the
    sha256 the table records for them (a fault of the disk or of a cached frame is caught here, not on a device)."""
    with open(path, "rb") as f:
        written = open_payload(str(path), f)
        wanted = index.to_bytes() if index_bytes is None else index_bytes
        if written.index_bytes != wanted or written.table_bytes != index.table_bytes():
            raise IntegrityError(f"the bundle written to {path} does not hold the index it was given; build it again")
        check_outside(written, f)
        if written.index.parts:  # its data area is in the parts, hashed as they were planned
            return
        for group, frame in written.index.frames():
            f.seek(written.data_offset + frame.offset)
            sha, left = hashlib.sha256(), frame.csize
            while left:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break
                sha.update(chunk)
                left -= len(chunk)
            if left or sha.hexdigest() != frame.sha256:
                raise IntegrityError(
                    f"{group.label(frame)} of the bundle written to {path} does not match its sha256 (a disk fault?); "
                    "build it again"
                )

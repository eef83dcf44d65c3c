"""Write the bundle executable: the stub with the payload section inserted before PyInstaller's `pydata`,
written atomically with its run bit, plus `<output>.sha256` in `sha256sum -c` format."""

import hashlib
from pathlib import Path

from bundler import __version__
from bundler.cache import file_sha256
from bundler.media.outputs import remove_stale_parts, write_checksum
from payload import fs
from payload.elf import find_section, insert_section
from payload.errors import BundleError, IntegrityError
from payload.fs import CHUNK
from payload.index import Entry, Frame, Group, Index
from payload.layout import SECTION, header_and_index, open_payload, write_section_content
from payload.outside import PLACEHOLDER, outside_sha256
from payload.rules import PULL_BACKGROUND


def build_index(
    identity, groups, images=(), require_key=None, bundler_version=__version__, min_glibc=None, min_glibc_file=None
):
    """The index for compressed `groups` laid out one after another in the data area, each group's frames back to
    back."""
    index_groups, entries = [], []
    offset = 0
    for group in groups:
        frames = []
        for frame in group.frames:
            frames.append(Frame(offset, frame.csize, frame.size, frame.sha256))
            offset += frame.csize
        index_groups.append(Group(group.name, frames))
        position = 0
        for m in group.members:
            entries.append(Entry(m.path, m.kind, m.mode, m.size, m.sha256, group.name, position))
            position += m.size
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
        description=identity.get("description"),
        min_glibc=min_glibc,
        update_repository=identity.get("update_repository"),
        min_glibc_file=min_glibc_file,
        pull=identity.get("pull") or PULL_BACKGROUND,
    )


def check_as_device(index):
    """Parse the index with the device's own reader: whatever the build accepts, every device accepts."""
    try:
        Index.from_bytes(index.to_bytes(), index.payload_size)
    except IntegrityError as exc:
        raise BundleError(
            f"internal error: every device would refuse the index this build made ({exc}); nothing was "
            "written, please report this"
        ) from None


def _no_signature(index_bytes):
    return b""


def write_bundle(stub, index, groups, output, sign=_no_signature):
    """Write the executable to `output` and its checksum file beside it; returns the executable's sha256.

    Both appear whole or not at all: the executable first, then its checksum file. `sign(index_bytes)` gives
    the signature block. The index gets the sha256 of the bytes outside the payload section
    (payload/outside.py): written first with a placeholder of the same length, then filled in."""
    check_as_device(index)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    frames = {g.name: g.path for g in groups}
    content = fs.temp_name(output)  # the section's bytes, a scratch file beside the output
    try:
        index.outside_sha256 = PLACEHOLDER
        with open(content, "wb") as out:
            write_section_content(out, index, frames, sign(index.to_bytes()))
        with fs.atomic_path(output, mode=0o755) as tmp:
            insert_section(str(stub), tmp, SECTION, content)
            record_outside_sha256(tmp, index, sign)
            check_written(tmp, index)
            digest = file_sha256(tmp)
        write_checksum(output, digest)
    finally:
        fs.safe_unlink(content)
    remove_stale_parts(output.parent, output.name)  # of an earlier split build of this name
    return digest


def check_written(path, index):
    """Read back what was written: the index the device will read, and every frame's bytes against the sha256
    the index records for them (a fault of the disk or of a cached frame is caught here, not on a device)."""
    with open(path, "rb") as f:
        written = open_payload(str(path), f)
        if written.index_bytes != index.to_bytes():
            raise IntegrityError(f"the bundle written to {path} does not hold the index it was given; build it again")
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


def record_outside_sha256(path, index, sign):
    """Put the real sha256 in place of the placeholder: same length, so nothing outside the section moves."""
    placeholder = header_and_index(index, sign(index.to_bytes()))
    with open(path, "r+b") as f:
        offset, size = find_section(f, SECTION)
        index.outside_sha256 = outside_sha256(f, offset, size)
        head = header_and_index(index, sign(index.to_bytes()))
        if len(head) != len(placeholder):
            raise IntegrityError("internal error: the index changed length when its outside_sha256 was filled in")
        f.seek(offset)
        f.write(head)

"""Split bundles (payload/parts.py): what `make --split`, `bundler split` and `bundler copy --split` write.

The data area is sliced as it is: part k holds its bytes [(k-1) * SIZE, k * SIZE), so a group may straddle two
parts. The new encoding table lists every part's name, size and sha256 (the header binds it); the content index
and the signature are copied as they are, so the split bundle keeps the bundle id and the signature, and no key
is needed. The executable's payload section keeps only the header, the content index, the signature and the table.
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from bundler.build.assemble import check_as_device, check_written
from bundler.cache import file_sha256
from bundler.media.outputs import checksum_path, checksum_text, part_names, remove_stale_parts
from payload import fs, sizes
from payload.elf import insert_section
from payload.errors import IntegrityError, UsageError
from payload.fs import CHUNK
from payload.index import Part
from payload.layout import SECTION, header_and_index, open_payload
from payload.parts import Spans

MIN_PART_SIZE = 64 << 10


def parse_size(text, option="--split", minimum=None):
    """Bytes from `123`, `64K`, `700M`, `2G` (powers of 1024; `MiB`, `MB` read the same), at least `minimum`
    (default: the smallest part)."""
    size = sizes.parse_size(text, option)
    if minimum is None and size < MIN_PART_SIZE:
        raise UsageError(f"{option} {text} is below the smallest part, {MIN_PART_SIZE >> 10} KiB")
    if minimum is not None and size < minimum:
        raise UsageError(f"{option} {text} is below the least, {sizes.size_text(minimum)}")
    return size


@dataclass
class Source:
    """What a split needs: the index without parts, a reader of the data area, and how to make the executable."""

    index: object
    data: object  # read at offsets base .. base + data_size
    base: int
    data_size: int
    make_executable: Callable[[str, str], None]  # (section content path, output path)
    signature: bytes = b""  # the signature the source carries, kept: it covers the content index alone
    index_bytes: Optional[bytes] = None  # the content index as stored, kept byte for byte


def stub_source(stub, index, frames, signature=b""):
    """For `make --split`: the compressed groups' frames, one after another, and a stub to insert into."""
    files = [(str(frames[g.name]), g.csize, None) for g in sorted(index.groups, key=lambda g: g.offset)]
    return Source(
        index,
        Spans(files, where="group frames", what="frame"),
        0,
        index.payload_size,
        lambda content, out: insert_section(str(stub), out, SECTION, content),
        signature,
        index.to_bytes(),
    )


def bundle_source(path, f):
    """For `bundler split` and `copy --split`: a bundle (split or not) whose payload section is replaced."""
    payload = open_payload(str(path), f)
    if payload.index.payload_size != payload.data_size:
        raise UsageError(f"{path}: its data area holds bytes no group uses; it was not made by bundler")
    return Source(
        payload.index.with_parts(()),
        payload.open_data(f),
        payload.data_offset,
        payload.data_size,
        lambda content, out: insert_section(str(path), out, SECTION, content, replace=True),
        payload.signature,
        payload.index_bytes,
    )


@dataclass
class Planned:
    """One file of a bundle as it is to be written: its name, size, sha256, and where its bytes come from."""

    name: str
    size: int
    sha256: str
    path: Optional[str] = None  # a local file holding the bytes
    data: object = None  # or a range of a reader
    start: int = 0
    text: Optional[bytes] = None  # or the bytes themselves

    def chunks(self):
        if self.text is not None:
            yield self.text
            return
        reader = self.data
        opened = open(self.path, "rb") if self.path is not None else None
        try:
            reader = opened or reader
            reader.seek(self.start)
            left = self.size
            while left:
                chunk = reader.read(min(CHUNK, left))
                if not chunk:
                    raise IntegrityError(f"{self.name} shrank while being read; do not change it during the copy")
                left -= len(chunk)
                yield chunk
        finally:
            if opened is not None:
                opened.close()


def part_spans(data_size, part_size):
    """(start, size) of each part."""
    return [(start, min(part_size, data_size - start)) for start in range(0, data_size, part_size)] or [(0, 0)]


def hash_range(reader, start, size, progress=None):
    sha = hashlib.sha256()
    for chunk in Planned("", size, "", data=reader, start=start).chunks():
        sha.update(chunk)
        if progress:
            progress(len(chunk))
    return sha.hexdigest()


def checksum_file(name, files):
    """NAME.sha256 for `files` (Planned), as a Planned of its own."""
    text = checksum_text([(p.sha256, p.name) for p in files])
    return Planned(checksum_path(name).name, len(text), hashlib.sha256(text).hexdigest(), text=text)


def plan_split(source, name, part_size, workdir, progress=None):
    """Every file of the split bundle named `name` (the parts, the executable, NAME.sha256), with their sha256;
    the executable is written to a temp file in `workdir` (the caller removes it: `Planned.path`). It keeps the
    source's content index and signature. One read of the data area hashes the parts."""
    if part_size < MIN_PART_SIZE:
        raise UsageError(f"a part of {part_size} bytes is below the smallest part, {MIN_PART_SIZE >> 10} KiB")
    spans = part_spans(source.data_size, part_size)
    parts = []
    with source.data.verifying():  # a damaged part of a split source is named, never copied on
        for part_name, (start, size) in zip(part_names(name, len(spans)), spans):
            sha = hash_range(source.data, source.base + start, size, progress)
            parts.append(Planned(part_name, size, sha, data=source.data, start=source.base + start))
    index = source.index.with_parts([Part(p.name, p.size, p.sha256) for p in parts])
    check_as_device(index)
    content = fs.temp_name(os.path.join(workdir, name + ".section"))
    executable = fs.temp_name(os.path.join(workdir, name))
    try:
        with open(content, "wb") as out:
            out.write(header_and_index(index, source.signature, source.index_bytes))
        source.make_executable(content, executable)
        check_written(executable, index, source.index_bytes)
        os.chmod(executable, 0o755)
    except BaseException:
        fs.safe_unlink(executable)
        raise
    finally:
        fs.safe_unlink(content)
    exe = Planned(name, os.path.getsize(executable), file_sha256(executable), path=executable)
    files = parts + [exe]
    return index, files + [checksum_file(name, files)]


def write_split(source, output, part_size):
    """Write the split bundle beside `output`: its parts, the executable, then OUTPUT.sha256, each whole, the set
    renamed into place only once every file is written. Returns the new index."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    index, files = plan_split(source, output.name, part_size, str(output.parent))
    temps = {}
    try:
        for planned in files:
            if planned.path is not None:
                temps[planned.name] = planned.path
                continue
            temp = temps[planned.name] = fs.temp_name(output.with_name(planned.name))
            with open(temp, "wb") as out:
                for chunk in planned.chunks():
                    out.write(chunk)
            os.chmod(temp, 0o644)
        for planned in files:  # parts first, the executable, then the checksum file
            fs.commit(temps.pop(planned.name), str(output.with_name(planned.name)))
    finally:
        for temp in temps.values():
            fs.safe_unlink(temp)
        source.data.close()
    remove_stale_parts(output.parent, output.name, keep={p.name for p in files})
    return index

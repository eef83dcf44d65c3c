"""payload/parts.py: reading a data area spread over part files, and every part's sha256 checked on the way."""

import hashlib
import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payload.errors import IntegrityError
from payload.groups import compress_frame, extract_group
from payload.index import Entry, Frame, Group, Index, Part
from payload.parts import Spans


def write_parts(directory, data, sizes, damage=None):
    """Files holding `data` cut at `sizes`; (path, size, sha256 of the undamaged bytes) for each."""
    files, start = [], 0
    for number, size in enumerate(sizes):
        piece = bytearray(data[start : start + size])
        sha = hashlib.sha256(piece).hexdigest()
        if damage is not None and damage[0] == number:
            piece[damage[1]] ^= 1
        path = os.path.join(str(directory), f"p.part{number + 1:03d}")
        with open(path, "wb") as out:
            out.write(piece)
        files.append((path, size, sha))
        start += size
    return files


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(min_size=1, max_size=3000),
    cuts=st.lists(st.integers(1, 700), min_size=1, max_size=8),
    reads=st.lists(st.tuples(st.integers(0, 3100), st.integers(0, 900)), max_size=20),
    base=st.integers(0, 5000),
)
def test_any_seek_and_read_gives_the_concatenated_bytes(tmp_path, data, cuts, reads, base):
    sizes, left = [], len(data)
    for cut in cuts:
        if left:
            sizes.append(min(cut, left))
            left -= sizes[-1]
    if left:
        sizes.append(left)
    spans = Spans(write_parts(tmp_path, data, sizes), base=base)
    with spans.verifying():
        for offset, size in reads:
            spans.seek(base + offset)
            assert spans.read(size) == data[offset : offset + size]
    # Reads anywhere and in any order: every part was still checked by the end of the block.
    assert spans._hashed == sizes


def test_a_damaged_part_is_named_as_soon_as_its_last_byte_is_read(tmp_path):
    data = os.urandom(3000)
    spans = Spans(write_parts(tmp_path, data, [1000, 1000, 1000], damage=(1, 10)), where="app")
    spans.seek(0)
    spans.read(1500)
    with pytest.raises(IntegrityError, match=r"^app: part p.part002 does not match its sha256"):
        spans.read(600)


def test_verifying_names_the_damaged_part_when_the_reading_failed_first(tmp_path):
    data = os.urandom(3000)
    spans = Spans(write_parts(tmp_path, data, [1000, 1000, 1000], damage=(2, 999)), where="app")
    with pytest.raises(IntegrityError, match="part p.part003 does not match"):
        with spans.verifying(complete=False):
            spans.seek(0)
            spans.read(10)
            raise IntegrityError("group 'x' does not decompress")
    # Without damage, the block's own error stands.
    clean = Spans(write_parts(tmp_path, data, [1000, 2000]))
    with pytest.raises(IntegrityError, match="does not decompress"):
        with clean.verifying():
            raise IntegrityError("group 'x' does not decompress")


def test_two_damaged_parts_are_both_named(tmp_path):
    data = os.urandom(3000)
    files = write_parts(tmp_path, data, [1000, 1000, 1000], damage=(0, 5))
    with open(files[2][0], "r+b") as f:
        f.write(b"\0\0")
    with pytest.raises(IntegrityError, match="parts p.part001, p.part003 do not match their sha256"):
        with Spans(files).verifying():
            pass


def test_missing_and_short_parts_are_named_when_the_reader_is_made(tmp_path):
    files = write_parts(tmp_path, os.urandom(2000), [1000, 1000])
    os.truncate(files[1][0], 999)
    with pytest.raises(IntegrityError, match=r"part p.part002 is 999 bytes, expected 1000"):
        Spans(files)
    os.unlink(files[1][0])
    with pytest.raises(IntegrityError, match=rf"part p.part002 is missing \(looked in {tmp_path}\)"):
        Spans(files)


def test_a_group_straddling_parts_extracts_unchanged(tmp_path):
    """The group extraction reads a split data area exactly as it reads an unsplit one."""
    content = os.urandom(50_000) * 4
    (tmp_path / "member").write_bytes(content)
    frame = io.BytesIO()
    compress_frame([str(tmp_path / "member")], frame, level=3)
    frame = frame.getvalue()
    group = Group("g", [Frame(0, len(frame), len(content), hashlib.sha256(frame).hexdigest())])
    entries = [Entry("member", "file", 0o644, len(content), hashlib.sha256(content).hexdigest(), "g", 0)]
    third = len(frame) // 3
    spans = Spans(write_parts(tmp_path, frame, [third, third, len(frame) - 2 * third]), base=777)
    with spans.verifying():
        extract_group(spans, 777, group, entries, str(tmp_path / "out"))
    assert (tmp_path / "out" / "member").read_bytes() == content


def index_with(parts, data_size=3000):
    return Index(
        "demo",
        "1",
        "offline",
        "amd64",
        "0",
        ["bin/x"],
        [Group("g", [Frame(0, data_size, 0, "0" * 64)])],
        [Entry("bin/x", "file", 0o755, 0, "1" * 64, "g", 0)],
        stub_sha256="4" * 64,
        parts=parts,
    )


def test_the_index_keeps_its_parts_and_refuses_parts_that_do_not_hold():
    parts = [Part("a.part001", 2000, "2" * 64), Part("a.part002", 1000, "3" * 64)]
    again = Index.from_bytes(index_with(parts).to_bytes(), index_with(parts).table_bytes(), 3000)
    assert [p.to_json() for p in again.parts] == [p.to_json() for p in parts]
    assert "parts" not in index_with([]).table_json() and "parts" not in index_with(parts).to_json()
    assert index_with(parts).to_bytes() == index_with([]).to_bytes()  # parts are packing, not content
    bad = {
        "do not add up": ([Part("a.part001", 2000, "2" * 64)], "the parts hold 2000 bytes, the data area 3000"),
        "path": ([Part("../a", 3000, "2" * 64)], "not a plain file name"),
        "hidden": ([Part(".a", 3000, "2" * 64)], "not a plain file name"),
        "twice": ([Part("a", 1500, "2" * 64), Part("a", 1500, "2" * 64)], "appears twice"),
        "empty": ([Part("a", 0, "2" * 64), Part("b", 3000, "2" * 64)], "not a positive size"),
        "sha": ([Part("a", 3000, "xyz")], "bad sha256"),
    }
    for _why, (parts, message) in bad.items():
        with pytest.raises(IntegrityError, match=message):
            Index.from_bytes(index_with(parts).to_bytes(), index_with(parts).table_bytes(), 3000)

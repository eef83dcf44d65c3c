"""payload/frame_headers.py: every frame header checked against the index before anything is extracted."""

import io
import os

import pytest
import zstandard

from payload.errors import IntegrityError
from payload.frame_headers import check_frame_headers
from payload.groups import MAX_WINDOW, compress_frame
from payload.index import Frame, Group, Index
from payload.layout import Payload


def payload_of(frames_and_sizes, per_group=1):
    """A data area holding the given frames one after another, and a Payload whose index gives `sizes`, in groups
    of `per_group` frames."""
    data, frames, offset = b"", [], 0
    for frame, size in frames_and_sizes:
        frames.append(Frame(offset, len(frame), size, "0" * 64))
        data += frame
        offset += len(frame)
    groups = [Group(f"g{n // per_group}", frames[n : n + per_group]) for n in range(0, len(frames), per_group)]
    index = Index("demo", "1", "v", "amd64", "0", ["x"], groups, [])
    return Payload("demo", index, b"", b"", 0, len(data)), io.BytesIO(data)


def real_group(tmp_path, content):
    src = tmp_path / "member"
    src.write_bytes(content)
    out = io.BytesIO()
    compress_frame([str(src)], out, level=3)
    return out.getvalue()


def test_frames_made_by_bundler_pass(tmp_path):
    frame = real_group(tmp_path, os.urandom(1000) * 50)
    payload, f = payload_of([(frame, 50000), (real_group(tmp_path, b""), 0)])
    check_frame_headers(f, payload)


def test_an_index_that_lies_about_a_group_size_is_refused(tmp_path):
    frame = real_group(tmp_path, b"abc" * 1000)
    payload, f = payload_of([(frame, 3000), (frame, 10**12)])
    with pytest.raises(IntegrityError, match="group 'g1': its frame holds 3000 bytes, the index says 1000000000000"):
        check_frame_headers(f, payload)


def test_a_frame_asking_for_a_window_above_the_bound_is_refused():
    size = 2 * MAX_WINDOW + 1
    params = zstandard.ZstdCompressionParameters.from_level(1, window_log=27, write_content_size=True)
    writer = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(writer, size=size, closefd=False) as w:
        w.write(b"\0" * size)
    frame = writer.getvalue()
    assert zstandard.get_frame_parameters(frame).window_size > MAX_WINDOW
    payload, f = payload_of([(frame, size)])
    with pytest.raises(IntegrityError, match="needs a 64 MiB decoder window, more than the 32 MiB"):
        check_frame_headers(f, payload)


@pytest.mark.parametrize("frame", [b"", b"\x28\xb5", b"not a zstd frame at all"])
def test_bytes_that_are_no_frame_are_refused(frame):
    payload, f = payload_of([(frame, 0)])
    with pytest.raises(IntegrityError, match="does not start with a zstd frame"):
        check_frame_headers(f, payload)


def test_a_frame_without_its_size_is_refused():
    cobj = zstandard.ZstdCompressor().compressobj()
    frame = cobj.compress(b"x" * 100) + cobj.flush()
    payload, f = payload_of([(frame, 100)])
    with pytest.raises(IntegrityError, match="does not record its size"):
        check_frame_headers(f, payload)


def test_every_frame_of_a_group_is_checked_and_the_one_that_lies_is_named(tmp_path):
    good, other = real_group(tmp_path, b"abc" * 1000), real_group(tmp_path, b"xyz" * 500)
    payload, f = payload_of([(good, 3000), (other, 1500), (good, 3000)], per_group=3)
    check_frame_headers(f, payload)
    payload, f = payload_of([(good, 3000), (other, 1499), (good, 3000)], per_group=3)
    with pytest.raises(
        IntegrityError, match="group 'g0' frame 2 of 3: its frame holds 1500 bytes, the index says 1499"
    ):
        check_frame_headers(f, payload)


def test_the_window_bound_holds_for_each_frame(tmp_path):
    size = 2 * MAX_WINDOW + 1
    params = zstandard.ZstdCompressionParameters.from_level(1, window_log=27, write_content_size=True)
    writer = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(writer, size=size, closefd=False) as w:
        w.write(b"\0" * size)
    small = real_group(tmp_path, b"abc" * 1000)
    payload, f = payload_of([(small, 3000), (writer.getvalue(), size)], per_group=2)
    with pytest.raises(IntegrityError, match="group 'g0' frame 2 of 2 needs a 64 MiB decoder window"):
        check_frame_headers(f, payload)

import hashlib
import io
import os
import subprocess

import pytest
import zstandard

from payload.blobs import MAX_WINDOW, WINDOW_LOG, compress_group, extract_group
from payload.errors import HostError, IntegrityError
from payload.index import Entry, Group


def _files(tmp_path, contents):
    paths = []
    for i, data in enumerate(contents):
        p = tmp_path / ("in%d" % i)
        p.write_bytes(data)
        paths.append(p)
    return paths


def _group_and_entries(paths, frame_bytes, sha, size):
    group = Group("files", 0, len(frame_bytes), size, sha)
    entries, pos = [], 0
    for i, p in enumerate(paths):
        data = p.read_bytes()
        entries.append(Entry("d/f%d" % i, "file", 0o755 if i == 0 else 0o644, len(data),
                             hashlib.sha256(data).hexdigest(), "files", pos))
        pos += len(data)
    return group, entries


def _compress(paths, level=3):
    out = io.BytesIO()
    size, sha, csize = compress_group(paths, out, level=level)
    return out.getvalue(), size, sha, csize


def test_decoder_bound_is_32_mib_and_matches_the_compressor_window():
    assert MAX_WINDOW == 32 * 1024 * 1024
    assert 1 << WINDOW_LOG <= MAX_WINDOW


def test_solid_frame_round_trips_through_the_zstd_cli(tmp_path):
    contents = [os.urandom(1000) * 50, b"", b"hello\n" * 1000]
    paths = _files(tmp_path, contents)
    frame, size, sha, csize = _compress(paths)
    assert csize == len(frame) and sha == hashlib.sha256(frame).hexdigest()
    assert size == sum(len(c) for c in contents)
    # An independent decoder gives back the concatenation of the inputs.
    out = subprocess.run(["zstd", "-d", "-c"], input=frame, stdout=subprocess.PIPE, check=True).stdout
    assert out == b"".join(contents)
    # The frame records its content size (python-zstandard's `size=`).
    assert zstandard.frame_content_size(frame) == size


def test_extract_writes_every_entry_with_its_mode(tmp_path):
    contents = [os.urandom(3 << 20), b"", b"abc" * 100000]
    paths = _files(tmp_path, contents)
    frame, size, sha, _ = _compress(paths)
    group, entries = _group_and_entries(paths, frame, sha, size)
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_group(io.BytesIO(frame), 0, group, entries, str(dest))
    for i, data in enumerate(contents):
        got = dest / "d" / ("f%d" % i)
        assert got.read_bytes() == data
        assert (got.stat().st_mode & 0o777) == (0o755 if i == 0 else 0o644)


def test_flipped_byte_in_frame_is_refused(tmp_path):
    paths = _files(tmp_path, [b"x" * 100000, os.urandom(5000)])
    frame, size, sha, _ = _compress(paths)
    group, entries = _group_and_entries(paths, frame, sha, size)
    bad = bytearray(frame)
    bad[len(bad) // 2] ^= 0x40
    with pytest.raises(IntegrityError):
        extract_group(io.BytesIO(bytes(bad)), 0, group, entries)


def test_every_wrong_entry_is_named(tmp_path):
    paths = _files(tmp_path, [b"a" * 10, b"b" * 10, b"c" * 10])
    frame, size, sha, _ = _compress(paths)
    group, entries = _group_and_entries(paths, frame, sha, size)
    entries[0].sha256 = "0" * 64
    entries[2].sha256 = "1" * 64
    with pytest.raises(IntegrityError) as info:
        extract_group(io.BytesIO(frame), 0, group, entries)
    assert "d/f0" in str(info.value) and "d/f2" in str(info.value) and "d/f1" not in str(info.value)


def test_truncated_frame_is_refused(tmp_path):
    paths = _files(tmp_path, [os.urandom(200000)])
    frame, size, sha, _ = _compress(paths)
    group, entries = _group_and_entries(paths, frame, sha, size)
    with pytest.raises(IntegrityError, match="cut short"):
        extract_group(io.BytesIO(frame[:-100]), 0, group, entries)


def test_frame_with_a_window_above_the_bound_is_refused(tmp_path):
    # A frame made by another tool with a 128 MiB window: the decoder must refuse it, not allocate it.
    data = os.urandom(1 << 16) * 8
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27)
    cobj = zstandard.ZstdCompressor(compression_params=params).compressobj()  # size unknown: window kept
    frame = cobj.compress(data) + cobj.flush()
    assert zstandard.get_frame_parameters(frame).window_size > MAX_WINDOW
    group = Group("files", 0, len(frame), len(data), hashlib.sha256(frame).hexdigest())
    entries = [Entry("f", "file", 0o644, len(data), hashlib.sha256(data).hexdigest(), "files", 0)]
    with pytest.raises(IntegrityError, match="does not decompress"):
        extract_group(io.BytesIO(frame), 0, group, entries)


def test_full_disk_is_a_host_error(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        paths = _files(tmp_path, [os.urandom(3 << 20)])
        frame, size, sha, _ = _compress(paths)
        group, entries = _group_and_entries(paths, frame, sha, size)
        with pytest.raises(HostError, match="no space"):
            extract_group(io.BytesIO(frame), 0, group, entries, str(mnt))
    finally:
        subprocess.run(["umount", str(mnt)], check=True)

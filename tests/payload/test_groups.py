import errno
import hashlib
import io
import os
import subprocess
import threading
import time

import pytest
import zstandard

from payload import groups
from payload.errors import HostError, IntegrityError
from payload.groups import MAX_WINDOW, WINDOW_LOG, compress_frame, extract_group
from payload.index import Entry, Frame, Group


def _files(tmp_path, contents):
    paths = []
    for i, data in enumerate(contents):
        p = tmp_path / f"in{i}"
        p.write_bytes(data)
        paths.append(p)
    return paths


def _group_and_entries(paths, frame_bytes, sha, size):
    group = Group("files", [Frame(0, len(frame_bytes), size, sha)])
    entries, pos = [], 0
    for i, p in enumerate(paths):
        data = p.read_bytes()
        entries.append(
            Entry(
                f"d/f{i}",
                "file",
                0o755 if i == 0 else 0o644,
                len(data),
                hashlib.sha256(data).hexdigest(),
                "files",
                pos,
            )
        )
        pos += len(data)
    return group, entries


def _compress(paths, level=3):
    out = io.BytesIO()
    size, sha, csize = compress_frame(paths, out, level=level)
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
        got = dest / "d" / f"f{i}"
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
    group = Group("files", [Frame(0, len(frame), len(data), hashlib.sha256(frame).hexdigest())])
    entries = [Entry("f", "file", 0o644, len(data), hashlib.sha256(data).hexdigest(), "files", 0)]
    with pytest.raises(IntegrityError, match="does not decompress"):
        extract_group(io.BytesIO(frame), 0, group, entries)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: a disk that fills up during the extraction."""
    if os.geteuid() != 0:
        pytest.skip(reason="mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_full_disk_is_a_host_error(tmp_path, small_disk):
    paths = _files(tmp_path, [os.urandom(3 << 20)])
    frame, size, sha, _ = _compress(paths)
    group, entries = _group_and_entries(paths, frame, sha, size)
    threads, fds = threading.active_count(), _open_fds()
    with pytest.raises(HostError, match="no space"):
        extract_group(io.BytesIO(frame), 0, group, entries, str(small_disk))
    assert threading.active_count() == threads and _open_fds() == fds


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_entries_cut_across_many_small_buffers(tmp_path, monkeypatch):
    # Tiny buffers make entries start and end inside buffers, span several, and sit empty between them.
    monkeypatch.setattr(groups, "BUFFER_SIZE", 4099)
    monkeypatch.setattr(groups, "BUFFERS", 2)
    contents = [b"", os.urandom(10000), b"", b"z" * 4099, os.urandom(1), os.urandom(30000), b""]
    paths = _files(tmp_path, contents)
    frame, size, sha, _ = _compress(paths)
    group, entries = _group_and_entries(paths, frame, sha, size)
    extract_group(io.BytesIO(frame), 0, group, entries)
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_group(io.BytesIO(frame), 0, group, entries, str(dest))
    out = (
        subprocess.run(
            ["sha256sum"] + [f"d/f{i}" for i in range(len(contents))],
            cwd=str(dest),
            stdout=subprocess.PIPE,
            check=True,
        )
        .stdout.decode()
        .split()
    )
    assert out[0::2] == [hashlib.sha256(c).hexdigest() for c in contents]


def test_group_at_an_offset_in_a_real_file_is_read_only_up_to_its_end(tmp_path):
    paths = _files(tmp_path, [os.urandom(3 << 20), b"abc" * 1000])
    frame, size, sha, _ = _compress(paths)
    group, entries = _group_and_entries(paths, frame, sha, size)
    group.frames[0].offset = 7
    bundle = tmp_path / "bundle"
    bundle.write_bytes(b"header" + b"\0" * 94 + b"x" * 7 + frame + b"trailing bytes of the next group")
    with open(str(bundle), "rb") as f:
        extract_group(f, 100, group, entries)


def test_stream_longer_than_the_group_says_is_refused(tmp_path):
    paths = _files(tmp_path, [os.urandom(3 << 20)])
    frame, size, sha, _ = _compress(paths)
    group, entries = _group_and_entries(paths, frame, sha, size)
    group.frames[0].size -= 1
    entries[0].size -= 1
    with pytest.raises(IntegrityError, match="more than"):
        extract_group(io.BytesIO(frame), 0, group, entries)


def test_frame_cut_short_by_the_index_is_refused(tmp_path):
    # The index itself says the frame is shorter (and hashes only that part): every byte is there, the frame is not.
    paths = _files(tmp_path, [os.urandom(300000)])
    frame, size, sha, _ = _compress(paths)
    group, entries = _group_and_entries(paths, frame, sha, size)
    short = frame[:-1000]
    group.frames[0].csize, group.frames[0].sha256 = len(short), hashlib.sha256(short).hexdigest()
    with pytest.raises(IntegrityError, match=f"expected {size}"):
        extract_group(io.BytesIO(frame), 0, group, entries)


def test_entries_that_do_not_cover_the_group_are_refused(tmp_path):
    paths = _files(tmp_path, [b"a" * 100])
    frame, size, sha, _ = _compress(paths)
    group, entries = _group_and_entries(paths, frame, sha, size)
    entries[0].size = 99
    with pytest.raises(IntegrityError, match="its entries 99"):
        extract_group(io.BytesIO(frame), 0, group, entries)


def test_damaged_group_leaves_no_thread_or_file_open(tmp_path):
    paths = _files(tmp_path, [os.urandom(3 << 20), os.urandom(3 << 20)])
    frame, size, sha, _ = _compress(paths)
    group, entries = _group_and_entries(paths, frame, sha, size)
    threads, fds = threading.active_count(), _open_fds()
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(IntegrityError, match="cut short"):
        extract_group(io.BytesIO(frame[: len(frame) * 2 // 3]), 0, group, entries, str(dest))
    assert threading.active_count() == threads and _open_fds() == fds


def test_failed_fsync_is_a_host_error(tmp_path, monkeypatch):
    # No real disk here fails fsync on demand (tmpfs never does), so os.fsync is made to fail with EIO.
    def failing_fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    paths = _files(tmp_path, [os.urandom(1000), os.urandom(1000)])
    frame, size, sha, _ = _compress(paths)
    group, entries = _group_and_entries(paths, frame, sha, size)
    dest = tmp_path / "dest"
    dest.mkdir()
    fds = _open_fds()
    with pytest.raises(HostError, match="d/f0: Input/output error"):
        extract_group(io.BytesIO(frame), 0, group, entries, str(dest))
    assert _open_fds() == fds


class _SlowFile(io.BytesIO):
    """A bundle on a slow device: every read takes a while, so the reader thread is still busy when the
    writing side fails (an in-memory file is read too fast to see whether extract_group waits for it)."""

    def read(self, size=-1):
        time.sleep(0.005)
        return super().read(size)


def test_write_failure_stops_the_reader_thread_and_waits_for_it(tmp_path):
    # The first file cannot be created, so extract_group gives up while the reader has most of 40 MiB left
    # (random bytes: the frame stays 40 MiB, read a MiB at a time). Finishing would read it all; stopping
    # leaves the file position short of its end, and no thread or descriptor behind.
    paths = _files(tmp_path, [os.urandom(40 << 20)])
    frame, size, sha, _ = _compress(paths)
    group, entries = _group_and_entries(paths, frame, sha, size)
    (tmp_path / "dest" / "d").mkdir(parents=True)
    (tmp_path / "dest" / "d" / "f0").write_bytes(b"in the way")
    threads, fds = threading.active_count(), _open_fds()
    bundle = _SlowFile(frame)
    with pytest.raises(HostError, match="d/f0"):
        extract_group(bundle, 0, group, entries, str(tmp_path / "dest"))
    assert bundle.tell() < len(frame)
    assert threading.active_count() == threads and _open_fds() == fds


# ---------------------------------------------------------------- groups of several frames


def _frames(paths, counts, level=3):
    """The files `paths` as one group of frames holding `counts` files each: (data area, group, entries)."""
    data, frames, start = b"", [], 0
    for count in counts:
        out = io.BytesIO()
        size, sha, csize = compress_frame(paths[start : start + count], out, level=level)
        frames.append(Frame(len(data), csize, size, sha))
        data += out.getvalue()
        start += count
    group = Group("files", frames)
    _, entries = _group_and_entries(paths, data, None, group.size)
    return data, group, entries


def _sha256sum(directory, names):
    """sha256 of each file by the sha256sum command: a check independent of the code under test."""
    out = subprocess.run(["sha256sum", "--"] + names, cwd=str(directory), stdout=subprocess.PIPE, check=True).stdout
    return out.decode().split()[0::2]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_a_group_of_several_frames_extracts_every_file(tmp_path, monkeypatch, workers):
    monkeypatch.setattr(groups, "BUFFER_SIZE", 4099)  # entries start and end inside buffers, and span several
    contents = [os.urandom(20000), b"", b"abc" * 9000, os.urandom(1), b"", os.urandom(50000) * 2, b"z" * 7000, b""]
    paths = _files(tmp_path, contents)
    data, group, entries = _frames(paths, [2, 1, 3, 2])
    assert len(group.frames) == 4
    dest = tmp_path / "dest"
    dest.mkdir()
    done = []
    extract_group(
        io.BytesIO(data), 0, group, entries, str(dest), progress=lambda d, t: done.append((d, t)), workers=workers
    )
    names = [f"d/f{i}" for i in range(len(contents))]
    assert _sha256sum(dest, names) == _sha256sum(tmp_path, [p.name for p in paths])
    assert [(dest / n).stat().st_mode & 0o777 for n in names] == [0o755] + [0o644] * (len(contents) - 1)
    assert done and max(d for d, _ in done) <= group.size and {t for _, t in done} == {group.size}
    assert done[-1] == (group.size, group.size)  # a bar ends at 100% however fast the jobs ran


def test_a_corrupt_frame_in_the_middle_is_named_and_the_others_still_checked(tmp_path):
    paths = _files(tmp_path, [os.urandom(30000), b"abc" * 20000, os.urandom(30000)])
    data, group, entries = _frames(paths, [1, 1, 1], level=1)
    middle = group.frames[1]
    bad = bytearray(data)
    bad[middle.offset + middle.csize - 8] ^= 0x01  # inside the middle frame's last block
    threads, fds = threading.active_count(), _open_fds()
    with pytest.raises(IntegrityError, match="group 'files' frame 2 of 3") as caught:
        extract_group(io.BytesIO(bytes(bad)), 0, group, entries, str(tmp_path))
    assert "frame 1 of 3" not in str(caught.value) and "frame 3 of 3" not in str(caught.value)
    assert threading.active_count() == threads and _open_fds() == fds


def test_a_frame_whose_sha256_differs_is_named_with_every_entry_verified(tmp_path):
    paths = _files(tmp_path, [b"one" * 1000, b"two" * 1000, b"three" * 1000])
    data, group, entries = _frames(paths, [1, 2])
    group.frames[1].sha256 = "0" * 64
    entries[0].sha256 = "1" * 64
    with pytest.raises(IntegrityError, match=r"^group 'files' frame 2 of 2 does not match its sha256"):
        extract_group(io.BytesIO(data), 0, group, entries)
    group.frames[1].sha256 = hashlib.sha256(data[group.frames[1].offset :]).hexdigest()
    with pytest.raises(IntegrityError, match=r"^sha256 mismatch in d/f0;"):
        extract_group(io.BytesIO(data), 0, group, entries)


def test_an_entry_across_two_frames_is_refused_before_anything_is_read(tmp_path):
    paths = _files(tmp_path, [b"a" * 100, b"b" * 100])
    data, group, entries = _frames(paths, [1, 1])
    entries[0].size, entries[1].offset, entries[1].size = 150, 150, 50  # tiling kept, the cut is not
    with pytest.raises(IntegrityError, match="entry 'd/f0' .* is not inside one of its frames"):
        extract_group(io.BytesIO(b""), 0, group, entries)


def test_bytes_after_a_frame_are_refused(tmp_path):
    paths = _files(tmp_path, [os.urandom(5000), os.urandom(5000)])
    data, group, entries = _frames(paths, [1, 1])
    # The first frame's record claims the second frame too: a second frame inside one frame's bytes.
    first, second = group.frames
    merged = Group("files", [Frame(0, len(data), first.size, hashlib.sha256(data).hexdigest())])
    with pytest.raises(IntegrityError, match="decompresses to more than its 5000 bytes"):
        extract_group(io.BytesIO(data), 0, merged, entries[:1])
    junk = data[: first.csize] + b"not a frame"
    merged = Group("files", [Frame(0, len(junk), first.size, hashlib.sha256(junk).hexdigest())])
    with pytest.raises(IntegrityError, match="does not decompress"):
        extract_group(io.BytesIO(junk), 0, merged, entries[:1])


def test_frames_in_flight_follow_the_cores_and_the_memory(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(groups, "_memory_available", lambda: None)
    assert groups.frames_in_flight(10) == groups.FRAMES_IN_FLIGHT == 4 and groups.frames_in_flight(2) == 2
    per_frame = MAX_WINDOW + groups.BUFFERS * groups.BUFFER_SIZE
    # A 512 MB board with 300 MB available: half of it holds the read-ahead and 3 frames' windows.
    monkeypatch.setattr(groups, "_memory_available", lambda: 300 << 20)
    assert groups.frames_in_flight(10) == ((150 << 20) - groups.READ_AHEAD) // per_frame == 3
    monkeypatch.setattr(groups, "_memory_available", lambda: 16 << 20)
    assert groups.frames_in_flight(10) == 1  # never none


def test_ctrl_c_during_a_multi_frame_extraction_stops_every_job(tmp_path):
    # KeyboardInterrupt is raised in the calling thread as the SIGINT handler would (from the progress callback,
    # where the thread waits); every decoder and writer thread must end and close its files before it propagates.
    paths = _files(tmp_path, [os.urandom(1 << 20) * 6, os.urandom(1 << 20) * 6, os.urandom(1 << 20) * 6])
    data, group, entries = _frames(paths, [1, 1, 1], level=1)
    dest = tmp_path / "dest"
    dest.mkdir()
    threads, fds = threading.active_count(), _open_fds()

    def interrupt(done, total):
        raise KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        extract_group(_SlowFile(data), 0, group, entries, str(dest), progress=interrupt, workers=2)
    assert threading.active_count() == threads and _open_fds() == fds


def test_a_full_disk_during_a_multi_frame_extraction_is_a_host_error(tmp_path, small_disk):
    paths = _files(tmp_path, [os.urandom(1 << 20), os.urandom(1 << 20), os.urandom(1 << 20)])
    data, group, entries = _frames(paths, [1, 1, 1], level=1)
    threads, fds = threading.active_count(), _open_fds()
    with pytest.raises(HostError, match="no space"):
        extract_group(io.BytesIO(data), 0, group, entries, str(small_disk), workers=3)
    assert threading.active_count() == threads and _open_fds() == fds


def _held_setup(tmp_path):
    contents = [os.urandom(3 << 20), b"abc" * 100000]
    paths = _files(tmp_path, contents)
    frame, size, sha, _ = _compress(paths)
    group, entries = _group_and_entries(paths, frame, sha, size)
    other = tmp_path / "other"
    other.mkdir()
    extract_group(io.BytesIO(frame), 0, group, entries, str(other))  # the version installed before
    return contents, frame, group, entries, other


def test_an_entry_another_version_holds_becomes_a_hard_link_to_it(tmp_path):
    contents, frame, group, entries, other = _held_setup(tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_group(io.BytesIO(frame), 0, group, entries, str(dest), held=lambda e: str(other / e.path))
    for e, data in zip(entries, contents):
        assert os.stat(dest / e.path).st_ino == os.stat(other / e.path).st_ino
        assert (dest / e.path).read_bytes() == data


def test_a_held_file_that_differs_or_has_another_mode_is_not_linked_nor_changed(tmp_path):
    contents, frame, group, entries, other = _held_setup(tmp_path)
    damaged = other / entries[0].path
    with open(damaged, "r+b") as f:  # same size, one byte changed past the first buffers
        f.seek(len(contents[0]) - 5)
        f.write(bytes([contents[0][-5] ^ 0xFF]))
    os.chmod(other / entries[1].path, 0o600)
    before = {e.path: ((other / e.path).read_bytes(), os.stat(other / e.path)) for e in entries}
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_group(io.BytesIO(frame), 0, group, entries, str(dest), held=lambda e: str(other / e.path))
    for e, data in zip(entries, contents):
        st = os.stat(dest / e.path)
        assert st.st_ino != before[e.path][1].st_ino and st.st_nlink == 1
        assert (dest / e.path).read_bytes() == data and st.st_mode & 0o777 == e.mode
        assert (other / e.path).read_bytes() == before[e.path][0]
        assert os.stat(other / e.path).st_mode == before[e.path][1].st_mode


def test_verify_only_entries_are_hashed_and_not_written(tmp_path):
    contents, frame, group, entries, _ = _held_setup(tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_group(io.BytesIO(frame), 0, group, entries, str(dest), held=lambda e: groups.VERIFY_ONLY)
    assert not (dest / "d").exists()
    bad = [Entry(e.path, e.kind, e.mode, e.size, "0" * 64, e.group, e.offset) for e in entries]
    with pytest.raises(IntegrityError, match="sha256 mismatch in d/f0, d/f1"):
        extract_group(io.BytesIO(frame), 0, group, bad, str(dest), held=lambda e: groups.VERIFY_ONLY)


# ---------------------------------------------------------------- decompressing ahead (a first install's checks)


class _CountingFile(io.BytesIO):
    """Counts the bytes read: how far the reader got."""

    def __init__(self, data):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def _wait_until_still(measure, timeout=60):
    """Wait until `measure()` stops changing (the same over four looks 50 ms apart), then return it: the threads
    have decoded all they may. A wait, not a timed assertion: a slow machine only waits longer."""
    last, same, deadline = None, 0, time.monotonic() + timeout
    while same < 4 and time.monotonic() < deadline:
        now = measure()
        same = same + 1 if now == last else 0
        last = now
        time.sleep(0.05)
    return last


def test_ahead_the_group_is_decoded_before_finish_within_its_buffers_then_written_whole(tmp_path):
    """start_extraction(ahead=True) reads and decodes before it knows where the group goes, into at most
    AHEAD_BUFFERS MiB of its own beside the job's BUFFERS (counted by tracemalloc, independently of the code's own
    count); finish() then writes every entry, the same as extract_group would."""
    import tracemalloc

    chunk = os.urandom(1 << 16)
    contents = [chunk * 2400, b"tail" * 1000]  # 150 MiB that compress to little: the decoder could run far ahead
    paths = _files(tmp_path, contents)
    frame, size, sha, _ = _compress(paths)
    group, entries = _group_and_entries(paths, frame, sha, size)
    threads = threading.active_count()
    bundle = _CountingFile(frame)
    tracemalloc.start()
    try:
        run = groups.start_extraction(bundle, 0, group, entries, ahead=True)
        read = _wait_until_still(lambda: bundle.bytes_read)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # What it holds: the buffers it decoded into (all it may fill: decoding went on before finish) and the
    # compressed bytes read (this frame is small), nowhere near the 150 MiB it would decode without a bound.
    decoded_ahead = groups._ahead_budget() * groups.BUFFER_SIZE  # AHEAD_BUFFERS, fewer where memory is short
    bound = (groups.BUFFERS + groups.AHEAD_BUFFERS) * groups.BUFFER_SIZE + read + (4 << 20)
    assert decoded_ahead <= held <= bound, (held, bound)
    assert not (tmp_path / "dest").exists()
    dest = tmp_path / "dest"
    dest.mkdir()
    run.finish(str(dest))
    for i, data in enumerate(contents):
        assert (dest / "d" / f"f{i}").read_bytes() == data
    assert bundle.bytes_read == len(frame) and threading.active_count() == threads


def test_ahead_and_cancelled_nothing_is_written_and_no_thread_or_file_is_left(tmp_path):
    paths = _files(tmp_path, [os.urandom(8 << 20)])
    frame, size, sha, _ = _compress(paths)
    group, entries = _group_and_entries(paths, frame, sha, size)
    (tmp_path / "bundle").write_bytes(frame)
    threads, fds = threading.active_count(), _open_fds()
    f = open(tmp_path / "bundle", "rb")
    run = groups.start_extraction(f, 0, group, entries, ahead=True, closing=f)
    _wait_until_still(lambda: f.tell())
    run.cancel()
    run.cancel()  # twice: the install's own and the caller's
    assert f.closed and threading.active_count() == threads and _open_fds() == fds


def test_ahead_a_damaged_frame_is_named_by_finish_not_before(tmp_path):
    """An error found while decoding ahead waits for finish(): the checks before the install speak first."""
    paths = _files(tmp_path, [os.urandom(2 << 20) + b"x" * (4 << 20)])
    frame, size, sha, _ = _compress(paths)
    group, entries = _group_and_entries(paths, frame, sha, size)
    bad = bytearray(frame)
    bad[len(bad) // 2] ^= 0xFF
    bundle = _CountingFile(bytes(bad))
    run = groups.start_extraction(bundle, 0, group, entries, ahead=True)
    _wait_until_still(lambda: bundle.bytes_read)
    with pytest.raises(IntegrityError, match="damaged"):
        run.finish(str(tmp_path))

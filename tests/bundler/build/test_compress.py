"""bundler/compress: a group is zstd frames of its members in order, cut between members, cached by its inputs,
its cut and parameters, and checked when it is taken from the cache."""

import hashlib
import io
import subprocess

import zstandard

from bundler.build.compress import Member, compress, group_key
from bundler.cache import Cache
from payload.fs import CHUNK
from payload.groups import MAX_WINDOW


def members(tmp_path, *contents):
    made = []
    for i, data in enumerate(contents):
        path = tmp_path / f"m{i}"
        path.write_bytes(data)
        made.append(Member(f"f{i}", 0o644, "file", path, hashlib.sha256(data).hexdigest(), len(data)))
    return made


def test_the_frame_holds_the_members_in_order_and_its_record_holds(tmp_path):
    cache = Cache(tmp_path / "cache")
    group = compress(
        cache, "files", members(tmp_path, b"one\n" * 999, b"", b"three"), 3, log=lambda _: None, counts=[3]
    )
    frame = group.path.read_bytes()
    assert (group.csize, group.frames[0].sha256) == (len(frame), hashlib.sha256(frame).hexdigest())
    params = zstandard.get_frame_parameters(frame)
    assert params.content_size == group.size == 3996 + 5 and params.window_size <= MAX_WINDOW
    assert zstandard.ZstdDecompressor().decompress(frame) == b"one\n" * 999 + b"three"


def test_frames_are_cut_between_members_and_each_decodes_on_its_own(tmp_path):
    cache = Cache(tmp_path / "cache")
    contents = [b"one\n" * 999, b"", b"three", b"four" * 5000, b"five"]
    group = compress(cache, "files", members(tmp_path, *contents), 3, log=lambda _: None, counts=[2, 1, 2])
    data, at = group.path.read_bytes(), 0
    assert [f.count for f in group.frames] == [2, 1, 2] and group.csize == len(data)
    wanted = [contents[0] + contents[1], contents[2], contents[3] + contents[4]]
    for frame, expected in zip(group.frames, wanted):
        one = data[at : at + frame.csize]
        assert hashlib.sha256(one).hexdigest() == frame.sha256
        assert zstandard.get_frame_parameters(one).content_size == frame.size == len(expected)
        # An independent decoder, on this frame's bytes alone.
        assert subprocess.run(["zstd", "-d", "-c"], input=one, stdout=subprocess.PIPE, check=True).stdout == expected
        at += frame.csize
    assert group_key(group.members, 3, [2, 1, 2]) != group_key(group.members, 3, [3, 2])


def test_a_second_compress_of_the_same_inputs_reads_the_cache(tmp_path):
    cache = Cache(tmp_path / "cache")
    said = []
    group = members(tmp_path, b"x" * 10000)
    first = compress(cache, "files", group, 3, log=said.append)
    second = compress(cache, "files", group, 3, log=said.append)
    assert len(said) == 1 and first == second
    assert group_key(group, 3, [1]) != group_key(group, 4, [1])


def test_a_truncated_cached_frame_is_compressed_again_with_a_notice(tmp_path):
    notices = []
    cache = Cache(tmp_path / "cache", notice=notices.append)
    group = members(tmp_path, b"y" * 10000)
    first = compress(cache, "files", group, 3, log=lambda _: None)
    first.path.write_bytes(first.path.read_bytes()[:-1])
    again = compress(cache, "files", group, 3, log=lambda _: None)
    assert len(notices) == 2 and "is damaged" in notices[0]  # the frame and its record, each named
    assert again.path.read_bytes() and again.frames == first.frames
    assert hashlib.sha256(again.path.read_bytes()).hexdigest() == first.frames[0].sha256


def test_a_cached_record_without_its_frame_is_dropped(tmp_path):
    notices = []
    cache = Cache(tmp_path / "cache", notice=notices.append)
    group = members(tmp_path, b"z" * 100)
    first = compress(cache, "files", group, 3, log=lambda _: None)
    first.path.unlink()
    again = compress(cache, "files", group, 3, log=lambda _: None)
    assert again.path.exists() and len(notices) == 1


def test_a_lone_frame_compresses_on_one_thread(tmp_path):
    """zstd's workers cut a frame into jobs (32 MiB here) that each load the window before them first (about the
    cost of compressing it again at level 19): a lone frame is the bytes of one thread. The input spans two jobs,
    where one thread and two workers give different bytes; the frame is checked against both, made here with
    zstandard directly."""
    block = hashlib.shake_256(b"lone frame").digest(1 << 20)
    data = b"".join(block[n:] + block[:n] for n in range(0, 40))
    group = compress(Cache(tmp_path / "cache"), "files", members(tmp_path, data), 1, log=lambda _: None)
    assert len(group.frames) == 1
    frames = {}
    for threads in (0, 2):
        params = zstandard.ZstdCompressionParameters.from_level(
            1,
            source_size=len(data),
            window_log=25,
            enable_ldm=True,
            threads=threads,
            job_size=32 << 20,
            write_content_size=True,
            write_checksum=False,
        )
        out = io.BytesIO()
        writer = zstandard.ZstdCompressor(compression_params=params).stream_writer(out, size=len(data), closefd=False)
        for at in range(0, len(data), CHUNK):  # fed as compress_frame feeds it: streamed, not in one call
            writer.write(data[at : at + CHUNK])
        writer.close()
        frames[threads] = out.getvalue()
    assert frames[0] != frames[2]  # the check below can tell them apart
    assert group.path.read_bytes() == frames[0]


def test_the_groups_of_a_bundle_compress_at_once(tmp_path):
    """Each frame compresses on one thread, so groups compressed in turn would leave a core idle: compress_all runs
    them together. Each group's log line waits here for the other's: in turn, the first would wait in vain."""
    import threading

    from bundler.build.compress import compress_all

    both = threading.Barrier(2, timeout=30)

    def log(line):
        if "compressing group" in line:
            both.wait()

    for directory in ("a", "b"):
        (tmp_path / directory).mkdir(exist_ok=True)
    groups = [("files", members(tmp_path / "a", b"one\n" * 999)), ("images", members(tmp_path / "b", b"two" * 99))]
    done = compress_all(Cache(tmp_path / "cache"), groups, 3, log=log)
    alone = [compress(Cache(tmp_path / "alone"), name, group, 3, log=lambda _: None) for name, group in groups]
    assert [g.name for g in done] == ["files", "images"]
    assert [g.path.read_bytes() for g in done] == [g.path.read_bytes() for g in alone]

"""bundler/compress: a group is one zstd frame of its members in order, cached by its inputs and parameters,
and checked when it is taken from the cache."""

import hashlib

import zstandard

from bundler.cache import Cache
from bundler.compress import Member, compress, group_key
from payload.blobs import MAX_WINDOW


def members(tmp_path, *contents):
    made = []
    for i, data in enumerate(contents):
        path = tmp_path / ("m%d" % i)
        path.write_bytes(data)
        made.append(Member("f%d" % i, 0o644, "file", path, hashlib.sha256(data).hexdigest(), len(data)))
    return made


def test_the_frame_holds_the_members_in_order_and_its_record_holds(tmp_path):
    cache = Cache(tmp_path / "cache")
    group = compress(cache, "files", members(tmp_path, b"one\n" * 999, b"", b"three"), 3, log=lambda _: None)
    frame = group.frame.read_bytes()
    assert (group.csize, group.sha256) == (len(frame), hashlib.sha256(frame).hexdigest())
    params = zstandard.get_frame_parameters(frame)
    assert params.content_size == group.size == 3996 + 5 and params.window_size <= MAX_WINDOW
    assert zstandard.ZstdDecompressor().decompress(frame) == b"one\n" * 999 + b"three"


def test_a_second_compress_of_the_same_inputs_reads_the_cache(tmp_path):
    cache = Cache(tmp_path / "cache")
    said = []
    group = members(tmp_path, b"x" * 10000)
    first = compress(cache, "files", group, 3, log=said.append)
    second = compress(cache, "files", group, 3, log=said.append)
    assert len(said) == 1 and first == second
    assert group_key(group, 3) != group_key(group, 4)


def test_a_truncated_cached_frame_is_compressed_again_with_a_notice(tmp_path):
    notices = []
    cache = Cache(tmp_path / "cache", notice=notices.append)
    group = members(tmp_path, b"y" * 10000)
    first = compress(cache, "files", group, 3, log=lambda _: None)
    first.frame.write_bytes(first.frame.read_bytes()[:-1])
    again = compress(cache, "files", group, 3, log=lambda _: None)
    assert len(notices) == 2 and "is damaged" in notices[0]  # the frame and its record, each named
    assert again.frame.read_bytes() and hashlib.sha256(again.frame.read_bytes()).hexdigest() == first.sha256


def test_a_cached_record_without_its_frame_is_dropped(tmp_path):
    notices = []
    cache = Cache(tmp_path / "cache", notice=notices.append)
    group = members(tmp_path, b"z" * 100)
    first = compress(cache, "files", group, 3, log=lambda _: None)
    first.frame.unlink()
    again = compress(cache, "files", group, 3, log=lambda _: None)
    assert again.frame.exists() and len(notices) == 1

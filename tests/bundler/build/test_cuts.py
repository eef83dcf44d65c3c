"""bundler/cuts: a group is cut only between files, into frames of at least the frame size, as even as the files
allow; a group under twice the frame size stays one frame."""

import random
from dataclasses import dataclass

import pytest

from bundler.build.cuts import DEFAULT_FRAME_SIZE, frame_counts


@dataclass
class Sized:
    size: int


def frames_of(sizes, frame_size):
    counts = frame_counts([Sized(s) for s in sizes], frame_size)
    assert sum(counts) == len(sizes) and all(c > 0 for c in counts)
    frames, at = [], 0
    for count in counts:
        frames.append(sizes[at : at + count])
        at += count
    return frames


@pytest.mark.parametrize(
    "sizes, frame_size, expected",
    [
        ([10] * 10, 30, [[10] * 3, [10] * 4, [10] * 3]),
        ([10] * 10, 50, [[10] * 5, [10] * 5]),
        ([10] * 10, 51, [[10] * 10]),  # under twice the frame size: one frame
        ([5, 5, 90], 30, [[5, 5], [90]]),  # a big file is never cut
        ([100, 0, 0, 100], 100, [[100], [0, 0, 100]]),
        ([0, 0, 200, 0], 100, [[0, 0, 200, 0]]),  # one file: nothing to cut between
    ],
)
def test_cuts_fall_between_files(sizes, frame_size, expected):
    assert frames_of(sizes, frame_size) == expected


def test_every_frame_but_a_lone_one_holds_bytes_and_the_frame_size_at_least_roughly():
    rng = random.Random(13)
    for _ in range(300):
        sizes = [
            rng.choice([0, 1, rng.randrange(1, 5000), rng.randrange(1, 100000)]) for _ in range(rng.randrange(1, 40))
        ]
        frame_size = rng.randrange(1, 200000)
        frames = frames_of(sizes, frame_size)
        assert [s for f in frames for s in f] == sizes
        if len(frames) > 1:
            assert all(sum(f) > 0 for f in frames)
            assert len(frames) <= sum(sizes) // frame_size


def test_the_benchmark_set_stays_one_frame_by_default():
    # 110.5 MB of binaries (docs/benchmarks.md): every cut measured costs 3-8% stored, so none by default.
    assert len(frame_counts([Sized(110_543_864 // 21)] * 21)) == 1
    assert len(frame_counts([Sized(DEFAULT_FRAME_SIZE)] * 5)) == 5

"""Where a group is cut into frames (docs/format.md, section 4): only between members, so that every file is whole
in one frame, into frames of at least `frame_size` bytes of input, as even as the files allow.

Every frame starts with an empty window: what it shares with the frames before it is stored again. On the
benchmark's real binaries that costs a few percent per cut (docs/format.md, section 4), so the default frame size keeps
a group of that size in one frame and cuts only groups of twice the default or more.
"""

DEFAULT_FRAME_SIZE = 64 << 20
# The zstd level frames are compressed at by default: with long-distance matching (payload/groups.py compress_frame)
# it stores what level 19 does without it for less CPU (docs/benchmarks.md, figure B).
DEFAULT_LEVEL = 18


def frame_counts(members, frame_size=DEFAULT_FRAME_SIZE):
    """How many of `members` (in order) each frame holds."""
    ends, total = [], 0
    for m in members:
        total += m.size
        ends.append(total)  # ends[i]: the stream offset where member i ends
    frames = total // frame_size if frame_size > 0 else 1
    counts, last = [], 0  # last: members already in a frame
    for k in range(1, frames):
        target = total * k // frames
        # The boundary nearest the target, after the previous cut, with bytes on both sides.
        start = ends[last - 1] if last else 0
        choices = [i + 1 for i in range(last, len(members) - 1) if start < ends[i] < total]
        if not choices:
            break
        boundary = min(choices, key=lambda b: (abs(ends[b - 1] - target), b))
        if ends[boundary - 1] <= start:
            continue
        counts.append(boundary - last)
        last = boundary
    counts.append(len(members) - last)
    return counts

"""Check every zstd frame header against the index before anything is extracted.

A few bytes per frame catch an index that lies about a frame's size (which would otherwise fail the free-space
check with exit 4, or fill the disk) and a frame that asks for a window above the decoder bound, before a
single byte is written.
"""

import zstandard

from payload.errors import IntegrityError
from payload.groups import MAX_WINDOW

_FRAME_HEADER_MAX = 18  # ZSTD_FRAMEHEADERSIZE_MAX


def check_frame_headers(f, payload):
    """Raise IntegrityError naming the first frame whose header does not match the index."""
    for group, frame in payload.index.frames():
        check_frame_header(f, payload.data_offset, group, frame)


def check_frame_header(f, data_offset, group, frame):
    where = group.label(frame)
    f.seek(data_offset + frame.offset)
    header = f.read(min(frame.csize, _FRAME_HEADER_MAX))
    try:
        params = zstandard.get_frame_parameters(header)
    except zstandard.ZstdError as exc:
        raise IntegrityError(
            f"{where} does not start with a zstd frame ({exc}); the bundle is damaged, copy it again"
        ) from None
    if params.content_size == zstandard.CONTENTSIZE_UNKNOWN:
        raise IntegrityError(
            f"{where}: its frame does not record its size; the bundle is damaged or not made by bundler"
        )
    if params.content_size != frame.size:
        raise IntegrityError(
            f"{where}: its frame holds {params.content_size} bytes, the index says {frame.size}; the bundle is "
            "damaged, copy it again"
        )
    if params.window_size > MAX_WINDOW:
        raise IntegrityError(
            f"{where} needs a {params.window_size >> 20} MiB decoder window, more than the {MAX_WINDOW >> 20} MiB "
            "this stub allows; rebuild the bundle with bundler's default window"
        )
    return params

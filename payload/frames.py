"""Check each group's zstd frame header against the index before anything is extracted.

A few bytes per group catch an index that lies about a group's size (which would otherwise fail the free-space
check with exit 4, or fill the disk) and a frame that asks for a window above the decoder bound, before a
single byte is written.
"""

import zstandard

from .blobs import MAX_WINDOW
from .errors import IntegrityError

_FRAME_HEADER_MAX = 18  # ZSTD_FRAMEHEADERSIZE_MAX


def check_frame_headers(f, payload):
    """Raise IntegrityError naming the first group whose frame header does not match the index."""
    for group in payload.index.groups:
        f.seek(payload.data_offset + group.offset)
        header = f.read(min(group.csize, _FRAME_HEADER_MAX))
        try:
            params = zstandard.get_frame_parameters(header)
        except zstandard.ZstdError as exc:
            raise IntegrityError("group %r does not start with a zstd frame (%s); the bundle is damaged, copy it "
                                 "again" % (group.name, exc))
        if params.content_size == zstandard.CONTENTSIZE_UNKNOWN:
            raise IntegrityError("group %r: its frame does not record its size; the bundle is damaged or not made "
                                 "by bundler" % group.name)
        if params.content_size != group.size:
            raise IntegrityError("group %r: its frame holds %d bytes, the index says %d; the bundle is damaged, "
                                 "copy it again" % (group.name, params.content_size, group.size))
        if params.window_size > MAX_WINDOW:
            raise IntegrityError("group %r needs a %d MiB decoder window, more than the %d MiB this stub allows; "
                                 "rebuild the bundle with bundler's default window" % (
                                     group.name, params.window_size >> 20, MAX_WINDOW >> 20))

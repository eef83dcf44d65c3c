"""What a start checks before an install writes a single file: the frame headers against the index, then the
signature against every key this start trusts (stub/trust.py)."""

from payload.frames import check_frame_headers

from . import install, trust


def before_install(payload, f, root, key_path=None):
    """Raise IntegrityError unless the bundle may be installed; returns the key to pin once it is (or None)."""
    check_frame_headers(f, payload)
    install.prepare_root(root)  # refuse a root others could tamper with before reading keys pinned in it
    return trust.check_before_install(payload, root, key_path)

"""sha256 of a few kilobytes (the index, at every start) without loading OpenSSL.

`import hashlib` loads `_hashlib` and with it libcrypto: a visible part of every start, much more under qemu
(docs/benchmarks.md). CPython's own sha256 gives the same digest; what hashes megabytes (install, verify,
pull) keeps using hashlib, whose OpenSSL is faster there.
"""

try:
    from _sha256 import sha256 as _builtin  # Python 3.9 to 3.11
except ImportError:
    try:
        from _sha2 import sha256 as _builtin  # 3.12 and later
    except ImportError:  # a Python built without them: OpenSSL's
        _builtin = None


def sha256(data=b""):
    """A sha256 hash object (update, digest, hexdigest) started with `data`."""
    if _builtin is None:
        import hashlib

        return hashlib.sha256(data)
    return _builtin(data)

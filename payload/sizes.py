"""Sizes as people write them on a command line or in an environment variable: 123, 64K, 700M, 2G."""

import re

from payload.errors import UsageError

UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"([0-9]+)([KMGT]?)(I?B)?", re.IGNORECASE)


def parse_size(text, what):
    """Bytes from `123`, `64K`, `700M`, `2G` (powers of 1024; `MiB`, `MB` read the same); `what` names the
    option or variable in the error."""
    match = _SIZE.fullmatch(str(text).strip())
    if not match:
        raise UsageError(f"{what} {text} is not a size; write it like 700M or 2G (K, M, G are powers of 1024)")
    return int(match.group(1)) * UNITS[match.group(2).upper()]


def describe_size(size):
    for unit in ("T", "G", "M", "K"):
        if size and size % UNITS[unit] == 0:
            return f"{size // UNITS[unit]}{unit}"
    return f"{size} bytes"

"""The build's output set, every name of it spelled here: the executable NAME, its parts NAME.part001, ... beside
it when it is split, and NAME.sha256, the `sha256sum -c` file that lists them all (parts first, the executable
last). make, split, copy and pull write it; check_output, inspect and copy read it."""

import os
import re
from pathlib import Path

from payload import fs

PART_SEPARATOR = ".part"
CHECKSUM_SUFFIX = ".sha256"


def checksum_path(output):
    """NAME.sha256 beside the executable NAME."""
    output = Path(output)
    return output.with_name(output.name + CHECKSUM_SUFFIX)


def part_names(name, count):
    """NAME.part001, ...: three digits at least, more when there are more parts, so that they sort in order."""
    width = max(3, len(str(count)))
    return [f"{name}{PART_SEPARATOR}{number:0{width}d}" for number in range(1, count + 1)]


def checksum_text(listed):
    """The `sha256sum -c` file for `listed`, (sha256, name) pairs in order."""
    return "".join(f"{sha256}  {name}\n" for sha256, name in listed).encode("utf-8")


def read_checksums(output):
    """{name: sha256} from NAME.sha256 (a `*name` of binary mode read as `name`); {} when there is none."""
    try:
        lines = checksum_path(output).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    pairs = (line.split(None, 1) for line in lines)
    return {name.lstrip("*"): sha256 for sha256, name in (p for p in pairs if len(p) == 2)}


def write_checksum(output, sha256):
    """NAME.sha256 of an unsplit executable, written atomically."""
    fs.write_atomic(str(checksum_path(output)), checksum_text([(sha256, Path(output).name)]).decode())


def stale_parts(directory, name, keep=()):
    """Parts of an earlier split of `name` in `directory` that are not in `keep`."""
    pattern = re.compile(re.escape(name + PART_SEPARATOR) + r"[0-9]{3,}")
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if pattern.fullmatch(n) and n not in keep)


def remove_stale_parts(directory, name, keep=()):
    for leftover in stale_parts(directory, name, keep):
        fs.safe_unlink(os.path.join(str(directory), leftover))

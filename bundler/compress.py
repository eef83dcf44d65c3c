"""Compressed groups, cached by (the sha256 of their inputs, parameters): a rebuild that changes nothing in a
group recompresses none of it."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import zstandard

from payload import fs
from payload.blobs import JOB_SIZE, WINDOW_LOG, compress_group


@dataclass(frozen=True)
class Member:
    path: str      # where it lands under the install root
    mode: int
    kind: str      # "file" or "blob"
    source: Path   # the bytes, in the cache
    sha256: str
    size: int


@dataclass(frozen=True)
class CompressedGroup:
    name: str
    members: tuple
    frame: Path
    size: int
    csize: int
    sha256: str


def group_key(members, level):
    material = {"inputs": [[m.sha256, m.size] for m in members], "level": level, "window_log": WINDOW_LOG, "job_size": JOB_SIZE,
                "zstd": zstandard.ZSTD_VERSION}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def compress(cache, name, members, level, log=print):
    """The zstd frame of `members` (in order), from the cache when it is there."""
    key = group_key(members, level)
    directory = cache.dir("groups")
    frame, meta = directory / (key + ".zst"), directory / (key + ".json")
    if frame.exists() and meta.exists():
        info = json.loads(meta.read_text())
        return CompressedGroup(name, tuple(members), frame, info["size"], info["csize"], info["sha256"])
    total = sum(m.size for m in members)
    log("compressing group %r: %d files, %.1f MB (zstd -%d)..." % (name, len(members), total / 1e6, level))
    with fs.atomic_file(frame, temp_dir=cache.tmp) as out:
        size, sha256, csize = compress_group([m.source for m in members], out, level=level)
    fs.write_atomic(meta, json.dumps({"size": size, "csize": csize, "sha256": sha256}), temp_dir=cache.tmp)
    return CompressedGroup(name, tuple(members), frame, size, csize, sha256)

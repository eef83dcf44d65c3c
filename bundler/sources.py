"""Gather a manifest's files for one architecture: download (pinned, cached), extract from release archives."""

from pathlib import Path

from .compress import Member
from .download import fetch
from .lockfile import pin_for
from .unpack import extract_cached

DEFAULT_GROUP = "files"


def _sha256_of_cached(path):
    # Cached blobs are named by their sha256 (content-addressed).
    return Path(path).name


def fetch_source(manifest, lock, spec, arch, cache, locked, offline, log=print):
    """Download one file's source for `arch`; returns (path of the bytes, sha256 of the downloaded source)."""
    source = manifest.source_for(spec, arch)
    url = manifest.resolve_url(source)
    expected = pin_for(manifest, lock, spec, arch, locked)
    path = Path(fetch(url, sha256=expected, cache=cache, offline=offline))
    return source, url, path


def gather_files(manifest, arch, lock, cache, locked=False, offline=False, log=print):
    """Members of each compression group, in manifest order: {group name: [Member, ...]}."""
    groups = {}
    for spec in manifest.files:
        source, url, path = fetch_source(manifest, lock, spec, arch, cache, locked, offline, log)
        if source.extract:
            path = Path(extract_cached(cache, _sha256_of_cached(path), source.extract))
        sha256 = _sha256_of_cached(path)
        member = Member(spec.path, spec.mode, "file", path, sha256, path.stat().st_size)
        groups.setdefault(spec.group or DEFAULT_GROUP, []).append(member)
    return groups

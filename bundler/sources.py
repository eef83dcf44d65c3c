"""Gather a manifest's files for one architecture: download (pinned, cached), extract from release archives."""

from pathlib import Path

from .compress import Member
from .download import fetch
from .lockfile import pin_for
from .unpack import extract_cached


def _sha256_of_cached(path):
    # Cached blobs are named by their sha256 (content-addressed).
    return Path(path).name


def fetch_source(manifest, lock, spec, arch, cache, locked, offline):
    """Download one file's source for `arch`, verified against its pin; returns (source, path in the cache)."""
    source = manifest.source_for(spec, arch)
    expected = pin_for(manifest, lock, spec, arch, locked)
    return source, Path(fetch(manifest.resolve_url(source), sha256=expected, cache=cache, offline=offline))


def gather_files(manifest, arch, lock, cache, locked=False, offline=False):
    """Members of each compression group, in manifest order: {group name: [Member, ...]}."""
    groups = {}
    for spec in manifest.files:
        source, path = fetch_source(manifest, lock, spec, arch, cache, locked, offline)
        if source.extract:
            path = Path(extract_cached(cache, _sha256_of_cached(path), source.extract))
        member = Member(spec.path, spec.mode, "file", path, _sha256_of_cached(path), path.stat().st_size)
        groups.setdefault(spec.group, []).append(member)
    return groups

"""Gather a manifest's files for one architecture: download (pinned, cached), extract from release archives."""

import hashlib
from pathlib import Path

from bundler.build.compress import Member
from bundler.build.download import fetch, is_local, local_path
from bundler.build.unpack import extract_cached
from bundler.manifest.lockfile import pin_for
from payload.errors import IntegrityError, NetworkError, UsageError


def _sha256_of_cached(path):
    # Cached blobs are named by their sha256 (content-addressed).
    return Path(path).name


def fetch_source(manifest, lock, spec, arch, cache, locked, offline):
    """Download one file's source for `arch`, verified against its pin; returns (source, path in the cache).

    A local source is read at every build; one edited since it was pinned is refused, naming the manifest line."""
    source = manifest.source_for(spec, arch)
    expected = pin_for(manifest, lock, spec, arch, locked)
    url = manifest.resolve_url(source)
    try:
        return source, Path(fetch(url, sha256=expected, cache=cache, offline=offline))
    except IntegrityError as exc:
        if not is_local(url):
            raise at_line(manifest, spec, source, exc) from None
        raise _local_file_changed(manifest, lock, spec, arch, source, url, expected) from None
    except (UsageError, NetworkError) as exc:
        raise at_line(manifest, spec, source, exc) from None


def at_line(manifest, spec, source, exc):
    """The same error, prefixed with the manifest line of the source it is about (once)."""
    where = f"{manifest.path}:{source.line or spec.line}"
    if str(exc).startswith(where):
        return exc
    return type(exc)(f"{where}: {exc}")


def _local_file_changed(manifest, lock, spec, arch, source, url, expected):
    path = local_path(url)
    with open(path, "rb") as f:
        actual = hashlib.file_digest(f, "sha256").hexdigest()
    where = f"{manifest.path}:{source.line or spec.line}"
    if source.sha256 is not None:
        pinned_by, todo = "its sha256 in the manifest", "correct that sha256 (or restore the file)"
    else:
        row = lock.file_pin(spec.path, arch)
        pinned_by = f"{lock.path or 'bundle.lock'}:{row.line}" if row is not None and row.line else "bundle.lock"
        todo = "run `bundler lock` to pin the new contents (or restore the file)"
    return IntegrityError(
        f"{where}: local file {path} (for '{spec.path}') changed since it was pinned: sha256 {actual}, "
        f"{pinned_by} says {expected}; {todo}"
    )


def gather_files(manifest, arch, lock, cache, locked=False, offline=False, fetched=None):
    """Members of each compression group, in manifest order: {group name: [Member, ...]}. With a dict `fetched`,
    also {file path: sha256 of its source as downloaded} (the archive's, for a member extracted from one)."""
    groups = {}
    for spec in manifest.files:
        source, path = fetch_source(manifest, lock, spec, arch, cache, locked, offline)
        if fetched is not None:
            fetched[spec.path] = _sha256_of_cached(path)
        if source.extract:
            try:
                path = Path(extract_cached(cache, _sha256_of_cached(path), source.extract))
            except (IntegrityError, UsageError) as exc:
                raise at_line(manifest, spec, source, exc) from None
        member = Member(spec.path, spec.mode, "file", path, _sha256_of_cached(path), path.stat().st_size)
        groups.setdefault(spec.group, []).append(member)
    return groups

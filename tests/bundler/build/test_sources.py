"""bundler/sources: a manifest's files gathered as members of their groups, from the cache, in manifest order."""

import hashlib

from bundler.build.sources import gather_files
from bundler.cache import Cache
from bundler.manifest import load_manifest
from bundler.manifest.lockfile import Lock

MANIFEST = """
[bundle]
name = "demo"
version = "1.0.0"
entrypoint = ["bin/b"]

[[file]]
path = "bin/b"
mode = "0755"
source = { url = "b.sh" }

[[file]]
path = "etc/a.conf"
source = { url = "a.conf" }
"""


def test_members_come_in_manifest_order_named_by_their_sha256(tmp_path):
    (tmp_path / "b.sh").write_text("#!/bin/sh\n")
    (tmp_path / "a.conf").write_text("a = 1\n")
    (tmp_path / "bundle.toml").write_text(MANIFEST)
    manifest = load_manifest(tmp_path / "bundle.toml")
    cache = Cache(tmp_path / "cache")
    groups = gather_files(manifest, "amd64", Lock(), cache)
    assert list(groups) == ["files"]
    got = [(m.path, m.mode, m.size, m.sha256) for m in groups["files"]]
    assert got == [
        ("bin/b", 0o755, 10, hashlib.sha256(b"#!/bin/sh\n").hexdigest()),
        ("etc/a.conf", 0o644, 6, hashlib.sha256(b"a = 1\n").hexdigest()),
    ]
    for member in groups["files"]:
        assert member.source.parent == cache.root / "blobs" / "sha256"
        assert hashlib.sha256(member.source.read_bytes()).hexdigest() == member.sha256

"""`bundler lock` pins the stub once it is built, and `make --locked` refuses another, with the real lock flow and
the real stub: the pin is the `stub_sha256` the made bundle's index records (docs/reproducible.md)."""

import json
import os

import tomllib

from bundler.arch import host_arch
from testing.devices import write_project
from testing.helpers import bundler


def stub_pins(project):
    return {row["arch"]: row["stub_sha256"] for row in tomllib.loads((project / "bundle.lock").read_text())["stub"]}


def test_lock_pins_the_stub_and_a_locked_make_refuses_another(stub_path, tmp_path):
    arch, cache = host_arch(), tmp_path / "cache"
    project = write_project(tmp_path / "p", {"bin/true": "/bin/true"}, ["bin/true"])

    # No portable stub in this cache and none given: nothing to pin yet, and the lock says so.
    first = bundler("lock", "--cache-dir", cache, cwd=project)
    assert f"the portable {arch} stub is not built in {cache}: not pinned" in first.stderr
    assert "stub" not in tomllib.loads((project / "bundle.lock").read_text())

    bundler("lock", "--stub", stub_path, "--cache-dir", cache, cwd=project)
    pinned = stub_pins(project)[arch]
    make = ("make", "--locked", "--stub", stub_path, "--cache-dir", cache, "--level", "3")
    bundler(*make, "-o", tmp_path / "app", cwd=project)
    index = json.loads(bundler("inspect", "--json", tmp_path / "app").stdout)
    assert index["stub_sha256"] == pinned  # the lock's pin is what a third party reads in a published bundle

    # The lock written where another stub was built (another bundler, another root): its pin is not this stub's.
    lock = project / "bundle.lock"
    other = "0" * 64
    lock.write_text(lock.read_text().replace(pinned, other))
    refused = bundler(*make, "-o", tmp_path / "refused", cwd=project, check=False)
    assert refused.returncode == 3, refused.stderr
    message = refused.stderr.strip()
    assert "\n" not in message and "Traceback" not in message
    assert f"the {arch} stub is pinned to stub_sha256 {other}, but {stub_path} has {pinned}" in message
    assert "docs/reproducible.md" in message and "bundler lock" in message
    assert not [name for name in os.listdir(tmp_path) if name.startswith("refused")]  # nothing half-written

    # Without --locked the lock's stub pin is not a rule; locking again with this stub accepts it.
    bundler(*make[:1], *make[2:], "-o", tmp_path / "unlocked", cwd=project)
    bundler("lock", "--stub", stub_path, "--cache-dir", cache, cwd=project)
    assert stub_pins(project) == {arch: pinned}
    bundler(*make, "-o", tmp_path / "again", cwd=project)

"""The amd64 portable stub built twice from cold, in two fresh caches (two Debian roots, two venvs, two PyInstaller
runs), is one file byte for byte: the same lock gives the same executable on any host (docs/reproducible.md). Each
cold build takes one to two minutes here, so the test runs in the default suite."""

import pytest

from bundler.stubs.debian import remove_root
from testing.devices import portable_stub, require_root_tools
from testing.faults import sha256_of

pytestmark = pytest.mark.slow


def test_two_cold_builds_of_the_amd64_stub_are_the_same_bytes(tmp_path):
    require_root_tools("amd64")
    built = []
    try:
        for name in ("first", "second"):
            stub, root, result = portable_stub(tmp_path / name, "amd64")
            built.append((stub, root))
            assert "building the portable amd64 stub" in result.stderr  # cold: nothing found in a cache
        (first, first_root), (second, second_root) = built
        assert first_root != second_root and first.name == second.name  # two roots, one stub key
        assert sha256_of(first) == sha256_of(second), (first.stat().st_size, second.stat().st_size)
    finally:
        for _, root in built:
            remove_root(root)

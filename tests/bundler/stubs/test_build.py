"""A damaged stub in the cache (a truncated file: a full disk, a copy cut short) is found and dropped, so it is
built again, never used: with the sha256 recorded beside it, and without one (a stub copied without its
checksum, or cached before checksums were kept), by reading its ELF sections and PyInstaller archive."""

import hashlib
import os
import shutil

import pytest

from bundler.cache import Cache
from bundler.stubs.build import cached_stub, install_stub

pytestmark = pytest.mark.slow  # the real host stub


def truncate(path, keep):
    with open(path, "r+b") as f:
        f.truncate(keep)


@pytest.fixture
def cache(tmp_path):
    notices = []
    cache = Cache(tmp_path / "cache", notice=notices.append)
    cache.notices = notices
    return cache


def test_a_truncated_stub_with_its_sha256_is_dropped(stub_path, cache):
    path = install_stub(cache, stub_path, cache.dir("stubs") / "stub-test")
    assert cached_stub(cache, path) and cache.notices == []
    truncate(path, os.path.getsize(path) // 2)
    assert not cached_stub(cache, path)
    assert not path.exists() and "does not match the sha256 recorded" in cache.notices[0]


def test_a_whole_stub_without_a_sha256_is_kept_and_its_sha256_recorded(stub_path, cache):
    path = cache.dir("stubs") / "stub-test"
    shutil.copyfile(stub_path, path)
    assert cached_stub(cache, path) and cache.notices == []
    recorded = path.with_name(path.name + ".sha256").read_text().strip()
    assert recorded == hashlib.sha256(stub_path.read_bytes()).hexdigest()


@pytest.mark.parametrize("keep", [0, 100, 0.5, -1])
def test_a_truncated_stub_without_a_sha256_is_dropped(keep, stub_path, cache):
    path = cache.dir("stubs") / "stub-test"
    shutil.copyfile(stub_path, path)
    size = os.path.getsize(path)
    truncate(path, int(size * keep) if isinstance(keep, float) else (size + keep if keep < 0 else keep))
    assert not cached_stub(cache, path)
    assert not path.exists() and not path.with_name(path.name + ".sha256").exists()
    assert "no sha256 was recorded" in cache.notices[0]

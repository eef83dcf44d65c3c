import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bundler.cache import Cache, default_root
from payload.errors import HostError, IntegrityError, UsageError


def sha256sum(path) -> str:
    """The digest from coreutils, independent of the code under test."""
    return subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


@pytest.fixture
def cache(tmp_path):
    return Cache(tmp_path / "cache")


# default location


def test_default_root_prefers_bundler_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("BUNDLER_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "explicit"
    assert Cache().root == tmp_path / "explicit"


def test_default_root_uses_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.delenv("BUNDLER_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "bundler"


def test_default_root_falls_back_to_home(monkeypatch, tmp_path):
    monkeypatch.delenv("BUNDLER_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home" / ".cache" / "bundler"


# blobs


def test_put_file_stores_the_bytes_under_their_sha256(cache, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(300_000))
    digest = cache.put_file(src)
    assert digest == sha256sum(src)
    path = cache.blob_path(digest)
    assert path == cache.root / "blobs" / "sha256" / digest
    assert sha256sum(path) == digest
    assert cache.has(digest)
    assert files_under(cache.root / "tmp") == []


def test_put_file_with_wrong_sha256_leaves_nothing(cache, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello")
    wrong = "0" * 64
    with pytest.raises(IntegrityError) as err:
        cache.put_file(src, sha256=wrong)
    assert wrong in str(err.value) and sha256sum(src) in str(err.value)
    assert files_under(cache.root) == []


def test_put_file_with_right_sha256_accepts_upper_case(cache, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello")
    digest = sha256sum(src)
    assert cache.put_file(src, sha256=digest.upper()) == digest
    assert cache.has(digest.upper())


def test_bad_sha256_is_a_usage_error(cache):
    with pytest.raises(UsageError, match="64 hex digits"):
        cache.blob_path("abc")
    with pytest.raises(UsageError):
        cache.has("../" + "0" * 61)


def test_writer_shows_nothing_until_commit(cache):
    data = os.urandom(100_000)
    with cache.writer() as blob:
        blob.write(data[:50_000])
        assert files_under(cache.root / "blobs") == []
        assert len(files_under(cache.root / "tmp")) == 1
        blob.write(data[50_000:])
        digest = blob.commit()
    assert digest == hashlib.sha256(data).hexdigest()
    assert cache.blob_path(digest).read_bytes() == data
    assert files_under(cache.root / "tmp") == []


def test_writer_removes_temp_file_on_error(cache):
    with pytest.raises(RuntimeError), cache.writer() as blob:
        blob.write(b"partial")
        raise RuntimeError("interrupted")
    assert files_under(cache.root) == []


def test_writer_without_commit_leaves_nothing(cache):
    with cache.writer() as blob:
        blob.write(b"forgotten")
    assert files_under(cache.root) == []


def test_writer_commit_with_wrong_sha256_leaves_nothing(cache):
    with pytest.raises(IntegrityError, match="check the pin"), cache.writer("test data") as blob:
        blob.write(b"data")
        blob.commit("1" * 64)
    assert files_under(cache.root) == []


def test_writer_reset_forgets_what_was_written(cache):
    with cache.writer() as blob:
        blob.write(b"first attempt, half")
        blob.reset()
        blob.write(b"second")
        digest = blob.commit()
    assert cache.blob_path(digest).read_bytes() == b"second"
    assert digest == hashlib.sha256(b"second").hexdigest()


def test_concurrent_writers_of_the_same_content(cache):
    data = os.urandom(2_000_000)
    results, errors = [], []

    def write():
        try:
            with cache.writer() as blob:
                for i in range(0, len(data), 65536):
                    blob.write(data[i : i + 65536])
                results.append(blob.commit())
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(results) == {hashlib.sha256(data).hexdigest()}
    assert sha256sum(cache.blob_path(results[0])) == results[0]
    assert files_under(cache.root / "tmp") == []


def test_two_processes_share_one_cache(tmp_path):
    """Two real processes put different files into one cache at the same time."""
    root = tmp_path / "cache"
    sources = []
    for i in range(2):
        src = tmp_path / f"src{i}"
        src.write_bytes(os.urandom(1_000_000))
        sources.append(src)
    code = "import sys; from bundler.cache import Cache; print(Cache(sys.argv[1]).put_file(sys.argv[2]))"
    project = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(root), str(src)], stdout=subprocess.PIPE, text=True, cwd=project
        )
        for src in sources
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == [sha256sum(src) for src in sources]
    assert files_under(root / "blobs") == sorted(f"sha256/{d}" for d in outputs)


# key -> sha256 records


def test_url_map_round_trip(cache):
    url = "https://example.org/releases/v1/hello"
    assert cache.url_sha256(url) is None
    cache.record_url(url, "a" * 64)
    assert cache.url_sha256(url) == "a" * 64
    cache.record_url(url, "B" * 64)
    assert cache.url_sha256(url) == "b" * 64
    assert cache.url_sha256(url + "?other") is None
    assert Cache(cache.root).url_sha256(url) == "b" * 64  # persisted, not held in memory


def test_record_refuses_a_bad_sha256(cache):
    with pytest.raises(UsageError):
        cache.record_url("https://example.org/x", "not-a-digest")
    assert cache.url_sha256("https://example.org/x") is None


# other caches


def test_dir_creates_a_directory_per_kind(cache):
    stubs = cache.dir("stubs")
    assert stubs == cache.root / "stubs" and stubs.is_dir()
    assert cache.dir("groups") != stubs


@pytest.mark.parametrize("kind", ["blobs", "tmp", "../escape", "a/b", "", "Upper"])
def test_dir_refuses_reserved_and_odd_names(cache, kind):
    with pytest.raises(ValueError):
        cache.dir(kind)


def test_put_file_of_a_missing_source_is_a_usage_error(cache, tmp_path):
    with pytest.raises(UsageError, match="cannot read"):
        cache.put_file(tmp_path / "absent")
    assert files_under(cache.root) == []


def test_unwritable_cache_is_a_host_error(cache, tmp_path):
    """A read-only bind mount: refuses writes even to root, so the test holds when run as root."""
    if os.geteuid() != 0:
        pytest.skip(reason="bind-mounting needs root")
    target = cache.root / "tmp"
    if subprocess.run(["mount", "--bind", "-o", "ro", str(target), str(target)], check=False).returncode != 0:
        pytest.skip(reason="cannot bind-mount here")
    try:
        src = tmp_path / "src"
        src.write_bytes(b"data")
        with pytest.raises(HostError, match="cannot write"):
            cache.put_file(src)
    finally:
        subprocess.run(["umount", str(target)], check=True)

import io
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bundler.build.download import fetch
from bundler.cache import Cache
from payload.errors import HostError, IntegrityError, NetworkError, UsageError
from payload.progress import Bar
from testing.helpers import ROOT, run_on_a_terminal
from testing.http_server import FileServer

FAST = {"backoff": 0.01}


def sha256sum(path) -> str:
    return subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "hello.bin").write_bytes(os.urandom(200_000))
    (root / "big.bin").write_bytes(os.urandom(3_000_000))
    return root


@pytest.fixture
def server(site):
    with FileServer(site) as server:
        yield server


@pytest.fixture
def cache(tmp_path):
    return Cache(tmp_path / "cache")


@pytest.fixture(autouse=True)
def online(monkeypatch):
    monkeypatch.delenv("BUNDLER_OFFLINE", raising=False)


def test_download_is_verified_and_stored_by_sha256(server, site, cache):
    digest = sha256sum(site / "hello.bin")
    path = fetch(server.url("hello.bin"), digest, cache=cache, **FAST)
    assert path == cache.root / "blobs" / "sha256" / digest
    assert sha256sum(path) == digest
    assert server.requests["/hello.bin"] == 1
    assert cache.url_sha256(server.url("hello.bin")) == digest


def test_unpinned_download_returns_what_was_served(server, site, cache):
    path = fetch(server.url("big.bin"), cache=cache, **FAST)
    assert sha256sum(path) == sha256sum(site / "big.bin")
    assert path.name == sha256sum(site / "big.bin")


def test_pinned_cache_hit_makes_no_request(server, site, cache):
    digest = sha256sum(site / "hello.bin")
    first = fetch(server.url("hello.bin"), digest, cache=cache, **FAST)
    second = fetch(server.url("hello.bin"), digest, cache=cache, **FAST)
    assert first == second
    assert server.requests["/hello.bin"] == 1


def test_unpinned_download_is_fetched_again(server, cache):
    url = server.url("hello.bin")
    first = fetch(url, cache=cache, **FAST)
    assert fetch(url, cache=cache, **FAST) == first
    assert server.requests["/hello.bin"] == 2


def test_wrong_sha256_raises_and_leaves_nothing_in_the_cache(server, site, cache):
    url = server.url("hello.bin")
    wrong = "ab" * 32
    with pytest.raises(IntegrityError) as err:
        fetch(url, wrong, cache=cache, **FAST)
    message = str(err.value)
    assert url in message and wrong in message and sha256sum(site / "hello.bin") in message
    assert "bundle.toml" in message and err.value.exit_code == 3
    assert files_under(cache.root) == []
    assert cache.url_sha256(url) is None


def test_server_serving_wrong_bytes_is_caught(server, site, cache):
    server.wrong_bytes("hello.bin")
    with pytest.raises(IntegrityError):
        fetch(server.url("hello.bin"), sha256sum(site / "hello.bin"), cache=cache, **FAST)
    assert files_under(cache.root) == []


def test_retries_after_dropped_connections(server, site, cache):
    server.drop_first("big.bin", 3)
    path = fetch(server.url("big.bin"), sha256sum(site / "big.bin"), cache=cache, retries=4, **FAST)
    assert sha256sum(path) == sha256sum(site / "big.bin")
    assert server.requests["/big.bin"] == 4


def test_gives_up_after_the_retries(server, cache):
    server.drop_first("big.bin", 10)
    with pytest.raises(NetworkError) as err:
        fetch(server.url("big.bin"), cache=cache, retries=2, **FAST)
    assert server.url("big.bin") in str(err.value) and "3 attempts" in str(err.value)
    assert server.requests["/big.bin"] == 3
    assert files_under(cache.root) == []


def test_retries_on_server_errors(server, site, cache):
    server.fail_with("hello.bin", 503, times=2)
    path = fetch(server.url("hello.bin"), cache=cache, **FAST)
    assert sha256sum(path) == sha256sum(site / "hello.bin")
    assert server.requests["/hello.bin"] == 3


def test_resumes_a_body_cut_short(server, site, cache):
    server.close_after("big.bin", 1_000_000)
    path = fetch(server.url("big.bin"), sha256sum(site / "big.bin"), cache=cache, **FAST)
    assert sha256sum(path) == sha256sum(site / "big.bin")
    assert server.requests["/big.bin"] == 2
    assert server.headers["/big.bin"][1].get("Range") == "bytes=1000000-"


def test_restarts_a_cut_body_when_the_server_cannot_resume(server, site, cache):
    server.ranges = False
    server.close_after("big.bin", 1_000_000, times=2)
    path = fetch(server.url("big.bin"), sha256sum(site / "big.bin"), cache=cache, **FAST)
    assert sha256sum(path) == sha256sum(site / "big.bin")
    assert server.requests["/big.bin"] == 3


def test_not_found_is_a_network_error_without_retries(server, cache):
    url = server.url("missing.bin")
    with pytest.raises(NetworkError) as err:
        fetch(url, cache=cache, **FAST)
    assert url in str(err.value) and "404" in str(err.value) and err.value.exit_code == 5
    assert server.requests["/missing.bin"] == 1
    assert files_under(cache.root) == []


def test_unreachable_port_is_a_network_error(cache):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.bin"
    with pytest.raises(NetworkError) as err:
        fetch(url, cache=cache, retries=1, **FAST)
    assert url in str(err.value) and "connection refused" in str(err.value)
    assert "\n" not in str(err.value)


def test_offline_uses_the_cache_and_never_the_network(server, site, cache):
    url = server.url("hello.bin")
    digest = sha256sum(site / "hello.bin")
    with pytest.raises(NetworkError) as err:
        fetch(url, digest, cache=cache, offline=True)
    assert url in str(err.value) and "bundler fetch" in str(err.value) and err.value.exit_code == 5
    assert server.requests["/hello.bin"] == 0

    fetch(url, cache=cache)  # `bundler fetch` on a machine with network: unpinned, recorded
    assert fetch(url, digest, cache=cache, offline=True) == cache.blob_path(digest)
    assert fetch(url, cache=cache, offline=True) == cache.blob_path(digest)
    assert server.requests["/hello.bin"] == 1


def test_offline_from_the_environment(server, cache, monkeypatch):
    monkeypatch.setenv("BUNDLER_OFFLINE", "1")
    with pytest.raises(NetworkError, match="not in the cache"):
        fetch(server.url("hello.bin"), cache=cache)
    assert server.requests["/hello.bin"] == 0


def test_file_url_is_copied(site, cache):
    src = site / "hello.bin"
    path = fetch(src.as_uri(), cache=cache)
    assert sha256sum(path) == sha256sum(src)
    with pytest.raises(IntegrityError, match="check the pin"):
        fetch(src.as_uri(), "cd" * 32, cache=cache)


def test_relative_path_starts_at_the_working_directory(site, cache, monkeypatch):
    digest = sha256sum(site / "hello.bin")
    monkeypatch.chdir(site.parent)
    assert fetch("site/hello.bin", digest, cache=Cache(cache.root / "b")).name == digest


def test_local_files_work_offline(site, cache):
    assert fetch(str(site / "hello.bin"), cache=cache, offline=True).name == sha256sum(site / "hello.bin")


def test_missing_local_file_is_a_usage_error(tmp_path, cache):
    with pytest.raises(UsageError, match="does not exist"):
        fetch(str(tmp_path / "nowhere.bin"), cache=cache)


def test_unsupported_scheme_is_a_usage_error(cache):
    with pytest.raises(UsageError, match="unsupported URL scheme"):
        fetch("ftp://example.org/x", cache=cache)


def test_no_progress_bar_when_stderr_is_not_a_terminal(server, cache, capfd):
    fetch(server.url("hello.bin"), cache=cache)
    assert capfd.readouterr().err == ""


def test_progress_bar_appears_when_stderr_is_a_terminal(server, cache):
    """stderr on a real pseudo-terminal, in a child process, so isatty() is the real one."""
    code = (
        "import sys; from bundler.build.download import fetch; from bundler.cache import Cache;"
        " fetch(sys.argv[1], cache=Cache(sys.argv[2]))"
    )
    returncode, out, seen = run_on_a_terminal(
        [sys.executable, "-c", code, server.url("big.bin"), str(cache.root)], cwd=ROOT
    )
    assert returncode == 0
    assert out == b""
    assert "big.bin" in seen and "100%" in seen


def test_forced_progress_bar_goes_to_stderr_only(server, cache, capfd):
    fetch(server.url("big.bin"), cache=cache, progress=True)
    out, err = capfd.readouterr()
    assert out == ""
    assert "big.bin" in err and "100%" in err and "3.0/3.0 MB" in err


def test_progress_bar_drawing():
    stream = io.StringIO()
    bar = Bar("x.bin", 4_000_000, stream)
    bar.update(2_000_000, force=True)
    bar.close()
    assert "[" + "#" * 15 + "." * 15 + "]  50%  2.0/4.0 MB" in stream.getvalue()
    assert stream.getvalue().endswith("\n")


def test_full_disk_is_a_host_error_and_leaves_no_temp_file(server, tiny_tmpfs):
    cache = Cache(tiny_tmpfs / f"cache-{uuid.uuid4().hex}")
    with pytest.raises(HostError) as err:
        fetch(server.url("big.bin"), cache=cache, **FAST)
    assert "no space" in str(err.value) and err.value.exit_code == 4
    assert files_under(cache.root) == []
    assert server.requests["/big.bin"] == 1  # a full disk is not retried

"""payload/http: the one retry loop (counted attempts, backoff, Retry-After) and Range resume, against a real
HTTP server on 127.0.0.1 (testing/http_server.py), through both of its users: bundler/build/download.py and the
registry client."""

import email.utils
import hashlib
import os
import subprocess
import sys
import time

import pytest

from bundler.build.download import fetch
from bundler.cache import Cache
from payload import http
from payload.errors import NetworkError
from payload.oci.registry import RegistryClient
from testing.http_server import FileServer

BLOB = bytes(range(256)) * 4000  # 1 MB
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
REPO = "test/blob"


@pytest.fixture
def server(tmp_path):
    site = tmp_path / "site"
    (site / "v2" / REPO / "blobs").mkdir(parents=True)
    (site / "v2" / REPO / "blobs" / DIGEST).write_bytes(BLOB)
    (site / "file.bin").write_bytes(BLOB)
    with FileServer(site) as running:
        running.empty("/v2/")  # the registry probe: 200, no auth challenge
        yield running


def blob_path():
    return f"/v2/{REPO}/blobs/{DIGEST}"


def reference(server):
    return f"127.0.0.1:{server.port}/{REPO}@{DIGEST}"


def test_a_206_from_the_wrong_offset_counts_as_an_attempt(server, tmp_path):
    """It used to be retried without counting: against a proxy that always answers so, the pull never ended
    (here it would have ended only once the server stops, after 20 requests, and then succeeded)."""
    server.wrong_range(blob_path(), times=20)
    dest = tmp_path / "blob"
    with RegistryClient(retries=2, backoff=0.01, progress=False) as client, pytest.raises(NetworkError) as caught:
        client.fetch_blob(reference(server), DIGEST, str(dest), len(BLOB))
    assert server.requests[blob_path()] == 3
    assert "wrong offset" in str(caught.value) and "3 attempts" in str(caught.value)
    assert caught.value.exit_code == 5
    assert not dest.exists() and not os.path.exists(str(dest) + ".partial")


def test_the_registry_client_waits_as_long_as_retry_after_asks(server, tmp_path):
    server.fail_with(blob_path(), 429, times=1, headers={"Retry-After": "1"})
    dest = tmp_path / "blob"
    with RegistryClient(retries=2, backoff=0.01, progress=False) as client:
        client.fetch_blob(reference(server), DIGEST, str(dest), len(BLOB))
    assert dest.read_bytes() == BLOB
    first, second = server.times[blob_path()]
    assert second - first >= 1.0


def test_a_download_waits_as_long_as_retry_after_asks(server, tmp_path):
    server.fail_with("/file.bin", 503, times=1, headers={"Retry-After": "1"})
    path = fetch(server.url("file.bin"), cache=Cache(tmp_path / "cache"), backoff=0.01, progress=False)
    assert path.read_bytes() == BLOB
    first, second = server.times["/file.bin"]
    assert second - first >= 1.0


def test_a_pause_longer_than_the_limit_is_not_waited_for(server, tmp_path):
    server.fail_with("/file.bin", 503, headers={"Retry-After": "3600"})
    with pytest.raises(NetworkError) as caught:
        fetch(server.url("file.bin"), cache=Cache(tmp_path / "cache"), backoff=0.01, progress=False)
    assert server.requests["/file.bin"] == 1
    assert "asks to wait 3600 s" in str(caught.value) and "HTTP 503" in str(caught.value)


def test_a_download_and_a_pull_share_the_resume_rule(server, tmp_path):
    """Cut after 300 kB once: the next attempt asks for the rest, and the result is whole."""
    server.close_after("/file.bin", 300_000)
    server.close_after(blob_path(), 300_000)
    fetched = fetch(server.url("file.bin"), cache=Cache(tmp_path / "cache"), backoff=0.01, progress=False)
    with RegistryClient(retries=2, backoff=0.01, progress=False) as client:
        pulled = client.fetch_blob(reference(server), DIGEST, str(tmp_path / "blob"), len(BLOB))
    assert fetched.read_bytes() == BLOB and open(pulled, "rb").read() == BLOB
    for path in ("/file.bin", blob_path()):
        assert [h.get("Range") for h in server.headers[path]] == [None, "bytes=300000-"]


class Answer:
    def __init__(self, headers):
        self.headers = headers


def test_retry_after_reads_seconds_and_http_dates():
    assert http.retry_after(Answer({"Retry-After": "7"})) == 7.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= http.retry_after(Answer({"Retry-After": later})) <= 31
    assert http.retry_after(Answer({"Retry-After": "soon"})) is None
    assert http.retry_after(Answer({})) is None


def test_the_policy_counts_every_failure_and_never_waits_less_than_asked():
    waited = []
    policy = http.RetryPolicy(retries=2, backoff=0.5, sleep=waited.append)
    calls = []

    def attempt():
        calls.append(1)
        raise http.Retry("busy", after=5.0 if len(calls) == 1 else None)

    with pytest.raises(NetworkError):
        policy.run(attempt, lambda reason, n: NetworkError(f"{reason} after {n}"))
    assert len(calls) == 3
    assert waited == [5.0, 1.0]


def test_a_pull_draws_its_bar_on_a_terminal_only(server, tmp_path):
    from testing.helpers import ROOT, run_on_a_terminal

    code = (
        "import sys; from payload.oci.registry import RegistryClient\n"
        "with RegistryClient() as client: client.fetch_blob(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))"
    )
    args = [reference(server), DIGEST, str(tmp_path / "blob"), str(len(BLOB))]
    returncode, _, seen = run_on_a_terminal([sys.executable, "-c", code, *args], cwd=ROOT)
    assert returncode == 0 and DIGEST[7:19] in seen and "100%" in seen and "MB" in seen
    quiet = subprocess.run(
        [sys.executable, "-c", code, *args[:2], str(tmp_path / "again"), args[3]],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
    )
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_a_proxy_that_cannot_be_reached_is_named_as_the_proxy_without_its_password(server, tmp_path, monkeypatch):
    import socket

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections to it are refused
    for name in ("NO_PROXY", "no_proxy", "http_proxy", "https_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY"):  # the client tries https first, then plain http to loopback
        monkeypatch.setenv(name, f"http://user:proxy-secret@127.0.0.1:{closed.getsockname()[1]}")
    try:
        with RegistryClient(retries=1, backoff=0.01, progress=False) as client, pytest.raises(NetworkError) as caught:
            client.fetch_blob(reference(server), DIGEST, str(tmp_path / "blob"), len(BLOB))
    finally:
        closed.close()
    message = str(caught.value)
    assert "through the proxy: connection refused" in message and "NO_PROXY" in message, message
    assert "proxy-secret" not in message

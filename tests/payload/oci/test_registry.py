"""The registry client against a real registry (Debian's docker-registry) on loopback.

Truth comes from elsewhere: digests from the umoci layout the images were pushed from, file hashes from
`sha256sum`, manifests from `skopeo inspect`. Faults come from a proxy in front of the real registry.
"""

import json
import os
import socket
import subprocess
import threading

import pytest

from payload.errors import HostError, IntegrityError, NetworkError, UsageError
from payload.oci.reference import parse_platform, parse_reference, platform_for_arch
from payload.oci.registry import RegistryClient, is_loopback_host, same_origin
from testing.http_server import FileServer
from testing.registry import (
    FaultProxy,
    Registry,
    free_port,
    non_loopback_address,
    self_signed_certificate,
    write_auth_file,
)
from tests.payload.oci.conftest import IDENTITY_TOKEN, PASSWORD, USER

AMD64 = platform_for_arch("amd64")


def sha256sum(path) -> str:
    output = subprocess.run(["sha256sum", str(path)], check=True, capture_output=True, text=True).stdout
    return "sha256:" + output.split()[0]


def skopeo_raw(ref: str) -> bytes:
    return subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"], check=True, capture_output=True
    ).stdout


def quick_client(**options) -> RegistryClient:
    return RegistryClient(**{"retries": 2, "backoff": 0.01, "progress": False, **options})


# resolving


def test_resolve_single_platform_image(client, images):
    resolved = client.resolve(images.base, AMD64)
    assert resolved.manifest_digest == images.digest("base")
    assert resolved.manifest_bytes == skopeo_raw(images.base)
    assert resolved.reference == parse_reference(images.base).with_digest(images.digest("base"))
    assert resolved.index_digest is None
    manifest = images.layout.manifest("base")
    assert resolved.config.digest == manifest["config"]["digest"]
    assert resolved.config_bytes == images.layout.blob(manifest["config"]["digest"])
    assert [(d.digest, d.size, d.media_type) for d in resolved.layers] == [
        (layer["digest"], layer["size"], layer["mediaType"]) for layer in manifest["layers"]
    ]


@pytest.mark.parametrize("platform, tag", [("linux/amd64", "base"), ("linux/arm/v7", "armv7")])
def test_index_resolved_to_the_platform_skipping_attestations(client, images, platform, tag):
    resolved = client.resolve(images.multi, platform if tag == "armv7" else parse_platform(platform))
    assert resolved.manifest_digest == images.digest(tag)
    index_bytes = skopeo_raw(images.multi)
    assert json.loads(index_bytes)["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert resolved.index_digest == "sha256:" + __import__("hashlib").sha256(index_bytes).hexdigest()
    assert str(resolved.reference) == f"{images.registry.host}/test/multi:1@{images.digest(tag)}"


def test_missing_platform_names_the_platforms_that_exist(client, images):
    with pytest.raises(UsageError) as caught:
        client.resolve(images.multi, platform_for_arch("riscv64"))
    message = str(caught.value)
    assert "linux/riscv64" in message and "linux/amd64, linux/arm/v7" in message and "unknown" not in message


def test_single_manifest_of_another_architecture_is_refused(client, images):
    with pytest.raises(UsageError) as caught:
        client.resolve(images.base, platform_for_arch("arm64"))
    assert "linux/amd64" in str(caught.value) and "linux/arm64" in str(caught.value)


def test_resolve_by_digest_and_fetch_manifest(client, images):
    pinned = f"{images.registry.host}/test/busybox@{images.digest('base')}"
    assert client.resolve(pinned, AMD64).manifest_digest == images.digest("base")
    assert client.fetch_manifest(pinned) == images.layout.blob(images.digest("base"))
    with pytest.raises(UsageError):
        client.fetch_manifest(images.base)  # a tag: nothing to verify against


def test_unknown_tag_and_blob_are_network_errors_naming_them(client, images):
    with pytest.raises(NetworkError) as caught:
        client.resolve(f"{images.registry.host}/test/busybox:nope", AMD64)
    assert "test/busybox:nope" in str(caught.value) and "not found" in str(caught.value)
    missing = "sha256:" + "0" * 64
    with pytest.raises(NetworkError) as caught:
        client.fetch_blob_bytes(images.base, missing)
    assert missing in str(caught.value)


def test_corrupted_manifest_is_refused(images, tmp_path):
    with FaultProxy(images.registry.port) as proxy:
        proxy.flip_manifest_byte(images.digest("base"), at=10)
        with quick_client() as client, pytest.raises(IntegrityError) as caught:
            client.fetch_manifest(f"{proxy.host}/test/busybox@{images.digest('base')}")
    assert caught.value.exit_code == 3 and "expected " + images.digest("base") in str(caught.value)


# blobs


def test_pull_every_blob_verified(client, images, tmp_path):
    resolved = client.resolve(images.derived, AMD64)
    assert len(resolved.layers) == 2
    assert resolved.layers[0] == client.resolve(images.base, AMD64).layers[0]  # the shared base layer
    for layer in resolved.layers:
        dest = tmp_path / layer.digest[7:]
        assert client.fetch_blob(resolved.reference, layer.digest, str(dest), layer.size) == str(dest)
        assert sha256sum(dest) == layer.digest
        assert not os.path.exists(str(dest) + ".partial")


def test_progress_callback_sees_the_blob_grow_to_its_size(images, tmp_path):
    calls = []
    layer = images.layers("base")[0]
    with quick_client(progress=lambda label, done, total: calls.append((label, done, total))) as client:
        client.fetch_blob(images.base, layer["digest"], str(tmp_path / "layer"), layer["size"])
    assert calls[0] == (layer["digest"][7:19], 0, layer["size"])
    assert calls[-1] == (layer["digest"][7:19], layer["size"], layer["size"])
    assert [done for _, done, _ in calls] == sorted(done for _, done, _ in calls)


def test_interrupted_blob_is_resumed_with_range(images, tmp_path):
    layer = images.layers("base")[0]
    dest = tmp_path / "layer"
    with FaultProxy(images.registry.port) as proxy:
        proxy.cut_blob(layer["digest"], after=300_000, times=1)
        with quick_client() as client:
            client.fetch_blob(f"{proxy.host}/test/busybox:1", layer["digest"], str(dest), layer["size"])
        gets = proxy.blob_requests(layer["digest"])
    assert len(gets) == 2
    assert "Range" not in gets[0] and gets[1]["Range"] == "bytes=300000-"
    assert sha256sum(dest) == layer["digest"]
    assert '"GET /v2/test/busybox/blobs/{} HTTP/1.1" 206'.format(layer["digest"]) in images.registry.log()


def test_pull_cut_off_is_kept_and_resumed_by_the_next_run(images, tmp_path):
    layer = images.layers("base")[0]
    dest = tmp_path / "layer"
    with FaultProxy(images.registry.port) as proxy:
        ref = f"{proxy.host}/test/busybox:1"
        proxy.cut_blob(layer["digest"], after=500_000, times=None)
        with quick_client(retries=1) as client, pytest.raises(NetworkError) as caught:
            client.fetch_blob(ref, layer["digest"], str(dest), layer["size"])
        assert "run again to resume" in str(caught.value) and proxy.host in str(caught.value)
        assert not dest.exists()
        # The retry already resumed once; each try added bytes to the kept partial file.
        assert os.path.getsize(str(dest) + ".partial") == 1_000_000
        proxy.cut_blob(layer["digest"], after=0, times=0)  # the network is back
        with quick_client() as client:
            client.fetch_blob(ref, layer["digest"], str(dest), layer["size"])
        assert proxy.blob_requests(layer["digest"])[-1]["Range"] == "bytes=1000000-"
    assert sha256sum(dest) == layer["digest"]
    assert not os.path.exists(str(dest) + ".partial")


def test_corrupted_byte_in_transit_is_refused_and_nothing_is_left(images, tmp_path):
    layer = images.layers("base")[0]
    dest = tmp_path / "layer"
    with FaultProxy(images.registry.port) as proxy:
        proxy.flip_blob_byte(layer["digest"], at=12345, times=None)
        with quick_client() as client, pytest.raises(IntegrityError) as caught:
            client.fetch_blob(f"{proxy.host}/test/busybox:1", layer["digest"], str(dest), layer["size"])
    assert layer["digest"] in str(caught.value)
    assert sorted(os.listdir(tmp_path)) == []


def test_bad_partial_file_from_an_earlier_run_is_fetched_again_whole(images, tmp_path):
    layer = images.layers("base")[0]
    dest = tmp_path / "layer"
    (tmp_path / "layer.partial").write_bytes(b"\0" * 1000)  # garbage, as a failing disk might leave
    with FaultProxy(images.registry.port) as proxy:
        with quick_client() as client:
            client.fetch_blob(f"{proxy.host}/test/busybox:1", layer["digest"], str(dest), layer["size"])
        gets = proxy.blob_requests(layer["digest"])
    assert [g.get("Range") for g in gets] == ["bytes=1000-", None]
    assert sha256sum(dest) == layer["digest"]


def test_whole_blob_found_at_dest_is_hashed_and_reused_without_a_request(images, tmp_path):
    layer = images.layers("base")[0]
    dest = tmp_path / "layer"
    dest.write_bytes(images.layout.blob(layer["digest"]))  # a blob an earlier run left complete
    with FaultProxy(images.registry.port) as proxy:
        with quick_client() as client:
            assert client.fetch_blob(f"{proxy.host}/test/busybox:1", layer["digest"], str(dest), layer["size"]) == str(
                dest
            )
        assert proxy.blob_requests(layer["digest"]) == []
    assert sha256sum(dest) == layer["digest"]


@pytest.mark.parametrize("tear", ["truncated", "zeroed block", "flipped byte"])
def test_torn_blob_left_at_dest_by_a_crash_is_fetched_again(images, tmp_path, capfd, tear):
    """Pulled blobs are not fsync'ed: after a power cut a finished name may hold fewer bytes, or a block of
    zeros where the data did not reach the disk. Reuse hashes them, so such a file is never trusted."""
    layer = images.layers("base")[0]
    good = images.layout.blob(layer["digest"])
    torn = {
        "truncated": good[: len(good) // 3],
        "zeroed block": good[:4096] + b"\0" * 4096 + good[8192:],
        "flipped byte": good[:777] + bytes([good[777] ^ 1]) + good[778:],
    }[tear]
    dest = tmp_path / "layer"
    dest.write_bytes(torn)
    with FaultProxy(images.registry.port) as proxy:
        with quick_client() as client:
            client.fetch_blob(f"{proxy.host}/test/busybox:1", layer["digest"], str(dest), layer["size"])
        gets = proxy.blob_requests(layer["digest"])
    assert len(gets) == 1 and "Range" not in gets[0]  # fetched whole, not resumed from the torn file
    assert sha256sum(dest) == layer["digest"]
    assert "does not hold blob {}".format(layer["digest"]) in capfd.readouterr().err


def test_blob_larger_than_its_descriptor_is_refused(client, images, tmp_path):
    layer = images.layers("base")[0]
    with pytest.raises(IntegrityError):
        client.fetch_blob(images.base, layer["digest"], str(tmp_path / "layer"), layer["size"] - 1)
    assert os.listdir(tmp_path) == []


# reachability, mirrors, redirects


def test_registry_down_is_a_network_error_naming_image_and_registry(tmp_path):
    host = f"127.0.0.1:{free_port()}"
    with quick_client() as client, pytest.raises(NetworkError) as caught:
        client.resolve(f"{host}/test/busybox:1", AMD64)
    message = str(caught.value)
    assert caught.value.exit_code == 5
    assert host in message and "test/busybox:1" in message and "Traceback" not in message


@pytest.mark.slow
def test_registry_stopped_then_started_again_on_the_same_storage(images, image_layout, tmp_path):
    registry = Registry(tmp_path / "storage")
    with registry:
        from testing.registry import push

        push(image_layout, "base", registry, "test/busybox:1")
    ref = f"{registry.host}/test/busybox:1"
    with quick_client() as client, pytest.raises(NetworkError):
        client.resolve(ref, AMD64)
    with registry, quick_client() as client:
        assert client.resolve(ref, AMD64).manifest_digest == images.digest("base")


def test_mirror_is_tried_first_for_pulls_by_digest(images, tmp_path):
    layer = images.layers("base")[0]
    unreachable = f"127.0.0.1:{free_port()}"
    pinned = parse_reference(f"{unreachable}/test/busybox:1").with_digest(images.digest("base"))
    with FaultProxy(images.registry.port) as mirror:
        with quick_client(mirrors=[mirror.host]) as client:
            assert client.fetch_manifest(pinned) == images.layout.blob(images.digest("base"))
            client.fetch_blob(pinned, layer["digest"], str(tmp_path / "layer"), layer["size"])
        assert mirror.blob_requests(layer["digest"])
    assert sha256sum(tmp_path / "layer") == layer["digest"]


def test_a_dead_mirror_is_probed_once_per_client(images, tmp_path):
    """A mirror that accepts connections and drops them: after its first probe fails, it is skipped."""
    accepted = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def drop_connections():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            connection.close()

    threading.Thread(target=drop_connections, daemon=True).start()
    dead = f"127.0.0.1:{listener.getsockname()[1]}"
    base = images.layout.manifest("base")
    try:
        with quick_client(mirrors=[dead], retries=1) as client:
            pinned = parse_reference(images.base).with_digest(images.digest("base"))
            client.fetch_manifest(pinned)
            probes = len(accepted)
            for layer in base["layers"] + [base["config"]]:
                client.fetch_blob(pinned, layer["digest"], str(tmp_path / layer["digest"][7:]), layer["size"])
    finally:
        listener.close()
    assert probes == 4  # (1 + 1 retry) x (http, then https)
    assert len(accepted) == probes


def test_blob_into_a_missing_directory_is_a_host_error(client, images, tmp_path):
    layer = images.layers("base")[0]
    with pytest.raises(HostError) as caught:
        client.fetch_blob(images.base, layer["digest"], str(tmp_path / "no" / "layer"), layer["size"])
    assert caught.value.exit_code == 4 and str(tmp_path / "no") in str(caught.value)


def test_own_registry_is_used_when_the_mirror_lacks_the_image(images, tmp_path, capfd):
    layer = images.layers("derived")[1]
    with Registry(tmp_path / "empty-mirror") as empty, FaultProxy(images.registry.port) as own:
        pinned = parse_reference(f"{own.host}/test/derived:1").with_digest(images.digest("derived"))
        with quick_client(mirrors=[empty.host]) as client:
            client.fetch_blob(pinned, layer["digest"], str(tmp_path / "layer"), layer["size"])
        assert own.blob_requests(layer["digest"])
        assert f"/v2/test/derived/blobs/{layer['digest']}" in empty.log()
    assert "mirror " + empty.host in capfd.readouterr().err


def test_tags_are_never_resolved_through_a_mirror(images):
    with FaultProxy(images.registry.port) as mirror, quick_client(mirrors=[mirror.host]) as client:
        client.resolve(images.base, AMD64)  # the tag, then the config blob by digest
        paths = [path for _, path, _ in mirror.requests]
    assert not any(path.endswith("/manifests/1") for path in paths)


def test_no_authorization_header_across_a_redirect_to_another_host(htpasswd_registry, tmp_path):
    layer_digest = json.loads(skopeo_raw_auth(htpasswd_registry, "private/busybox:1"))["layers"][0]["digest"]
    storage = tmp_path / "storage-host"
    storage.mkdir()
    (storage / layer_digest).write_bytes(htpasswd_registry.blob_data_path(layer_digest).read_bytes())
    with FileServer(storage) as storage_host, FaultProxy(htpasswd_registry.port) as proxy:
        auth_file = write_auth_file(tmp_path / "auth.json", proxy.host, USER, PASSWORD)
        proxy.redirect_blobs(f"http://localhost:{storage_host.port}")  # another host name: 127.0.0.1 != localhost
        with quick_client(auth_file=str(auth_file)) as client:
            client.fetch_blob(f"{proxy.host}/private/busybox:1", layer_digest, str(tmp_path / "layer"))
        registry_side = proxy.blob_requests(layer_digest)
        storage_side = storage_host.headers["/" + layer_digest]
    assert registry_side[0]["Authorization"].startswith("Basic ")
    assert storage_side and all("Authorization" not in headers for headers in storage_side)
    assert sha256sum(tmp_path / "layer") == layer_digest


def skopeo_raw_auth(registry: Registry, name: str) -> bytes:
    return subprocess.run(
        [
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            f"{USER}:{PASSWORD}",
            f"docker://{registry.host}/{name}",
        ],
        check=True,
        capture_output=True,
    ).stdout


# authentication


def test_htpasswd_registry_with_credentials_from_config_json(htpasswd_registry, images, tmp_path, monkeypatch):
    auth_file = write_auth_file(tmp_path / "config.json", htpasswd_registry.host, USER, PASSWORD)
    ref = f"{htpasswd_registry.host}/private/busybox:1"
    with quick_client(auth_file=str(auth_file)) as client:
        assert client.resolve(ref, AMD64).manifest_digest == images.digest("base")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    with quick_client() as client:
        assert client.resolve(ref, AMD64).manifest_digest == images.digest("base")
    home_config = tmp_path / "home" / ".docker" / "config.json"
    home_config.parent.mkdir(parents=True)
    write_auth_file(home_config, f"http://{htpasswd_registry.host}", USER, PASSWORD)
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    with quick_client() as client:
        assert client.resolve(ref, AMD64).manifest_digest == images.digest("base")


def test_htpasswd_registry_without_credentials_says_to_log_in(htpasswd_registry):
    with quick_client() as client, pytest.raises(NetworkError) as caught:
        client.resolve(f"{htpasswd_registry.host}/private/busybox:1", AMD64)
    message = str(caught.value)
    assert "log in" in message and "REGISTRY_AUTH_FILE" in message and htpasswd_registry.host in message


def test_htpasswd_registry_with_wrong_password_names_the_auth_file(htpasswd_registry, tmp_path):
    auth_file = write_auth_file(tmp_path / "config.json", htpasswd_registry.host, USER, "wrong")
    with quick_client(auth_file=str(auth_file)) as client, pytest.raises(NetworkError) as caught:
        client.resolve(f"{htpasswd_registry.host}/private/busybox:1", AMD64)
    assert str(auth_file) in str(caught.value) and "refused the credentials" in str(caught.value)


def test_bearer_token_anonymous_pull(token_registry, images, tmp_path):
    tokens = token_registry.token
    tokens.requests.clear()
    layer = images.layers("base")[0]
    ref = f"{token_registry.host}/hub/busybox:1"
    with quick_client() as client:
        resolved = client.resolve(ref, AMD64)
        client.fetch_blob(resolved.reference, layer["digest"], str(tmp_path / "layer"), layer["size"])
    assert resolved.manifest_digest == images.digest("base")
    assert sha256sum(tmp_path / "layer") == layer["digest"]
    # One anonymous token for the repository, reused for the manifest, the config and the layer.
    assert tokens.requests == [("GET", {"scope": "repository:hub/busybox:pull", "service": tokens.service}, None)]


def test_bearer_token_from_identity_token(token_registry, images, tmp_path):
    tokens = token_registry.token
    tokens.requests.clear()
    tokens.allow_anonymous = False
    try:
        ref = f"{token_registry.host}/hub/busybox:1"
        with quick_client() as client, pytest.raises(NetworkError) as caught:
            client.resolve(ref, AMD64)
        assert "log in" in str(caught.value)
        auth_file = write_auth_file(tmp_path / "config.json", token_registry.host, identity_token=IDENTITY_TOKEN)
        with quick_client(auth_file=str(auth_file)) as client:
            assert client.resolve(ref, AMD64).manifest_digest == images.digest("base")
    finally:
        tokens.allow_anonymous = True
    method, form, _ = tokens.requests[-1]
    assert method == "POST" and form["grant_type"] == "refresh_token" and form["refresh_token"] == IDENTITY_TOKEN


def test_bearer_token_with_password_and_a_wrong_one(token_registry, images, tmp_path):
    tokens = token_registry.token
    ref = f"{token_registry.host}/hub/busybox:1"
    good = write_auth_file(tmp_path / "good.json", token_registry.host, USER, PASSWORD)
    with quick_client(auth_file=str(good)) as client:
        assert client.resolve(ref, AMD64).manifest_digest == images.digest("base")
    assert tokens.requests[-1][2].startswith("Basic ")
    bad = write_auth_file(tmp_path / "bad.json", token_registry.host, USER, "nope")
    with quick_client(auth_file=str(bad)) as client, pytest.raises(NetworkError) as caught:
        client.resolve(ref, AMD64)
    assert "refused the credentials" in str(caught.value)


# plain http only for loopback and named insecure registries; https with certificate checks


def test_loopback_hosts():
    for host in ("127.0.0.1:5000", "127.1.2.3", "localhost:5000", "[::1]:5000", "localhost"):
        assert is_loopback_host(host), host
    for host in ("192.0.2.2:5000", "registry.example", "[fd00::2]:5000", "localhost.example.com"):
        assert not is_loopback_host(host), host


def test_plain_http_only_for_registries_named_insecure(images):
    address = non_loopback_address()
    if address is None:
        pytest.skip(reason="this machine has no non-loopback address")
    with FaultProxy(images.registry.port, listen=address) as proxy:
        ref = f"{proxy.host}/test/busybox:1"
        with quick_client() as client, pytest.raises(NetworkError) as caught:
            client.resolve(ref, AMD64)
        assert "TLS" in str(caught.value) and proxy.host in str(caught.value)
        assert proxy.requests == []  # not one plain-http request
        with quick_client(insecure_registries=[proxy.host]) as client:
            assert client.resolve(ref, AMD64).manifest_digest == images.digest("base")


@pytest.mark.slow
def test_https_registry_certificate_is_checked(images, image_layout, tmp_path, monkeypatch):
    pytest.importorskip("cryptography")
    address = non_loopback_address()
    if address is None:
        pytest.skip(reason="this machine has no non-loopback address")
    certificate, key = self_signed_certificate(tmp_path, address)
    with Registry(tmp_path / "storage", listen=address, tls=(certificate, key)) as registry:
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--dest-cert-dir",
                str(tmp_path / "none"),
                "--dest-tls-verify=false",
                f"oci:{image_layout.path}:base",
                f"docker://{registry.host}/test/busybox:1",
            ],
            check=True,
            capture_output=True,
        )
        ref = f"{registry.host}/test/busybox:1"
        with quick_client() as client, pytest.raises(NetworkError) as caught:
            client.resolve(ref, AMD64)
        assert "TLS" in str(caught.value) and "REQUESTS_CA_BUNDLE" in str(caught.value)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate))
        with quick_client() as client:
            assert client.resolve(ref, AMD64).manifest_digest == images.digest("base")


@pytest.mark.slow
def test_loopback_registry_over_tls_is_found_after_plain_http(images, image_layout, tmp_path):
    """Plain http is tried first on loopback; a TLS registry there answers it with 400 and https follows."""
    pytest.importorskip("cryptography")
    certificate, key = self_signed_certificate(tmp_path, "127.0.0.1")
    with Registry(tmp_path / "storage", tls=(certificate, key)) as registry:
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                f"oci:{image_layout.path}:base",
                f"docker://{registry.host}/test/busybox:1",
            ],
            check=True,
            capture_output=True,
        )
        with quick_client() as client:
            resolved = client.resolve(f"{registry.host}/test/busybox:1", AMD64)
        assert resolved.manifest_digest == images.digest("base")


# mirrors on the device (stub/images.py registry_client): checked like any registry


@pytest.mark.slow
def test_a_mirror_keeps_tls_verification_unless_named_insecure(images, image_layout, tmp_path, monkeypatch, capfd):
    from stub import options
    from stub.images import registry_client

    pytest.importorskip("cryptography")
    address = non_loopback_address()
    if address is None:
        pytest.skip(reason="this machine has no non-loopback address")
    certificate, key = self_signed_certificate(tmp_path, address)
    ref = parse_reference(f"{images.registry.host}/test/busybox@{images.digest('base')}")
    with Registry(tmp_path / "mirror", listen=address, tls=(certificate, key)) as mirror:
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{image_layout.path}:base",
             f"docker://{mirror.host}/test/busybox:1"],
            check=True,
            capture_output=True,
        )  # fmt: skip

        def fetch(args, environ):
            """The manifest through this start's client, and the manifest requests the mirror answered."""
            since = len(mirror.served())
            with registry_client(options.parse(args), environ) as client:
                data = client.fetch_manifest(ref)
            return data, [r for r in mirror.served(since) if "/manifests/" in r["uri"]]

        genuine = images.layout.blob(images.digest("base"))
        for args, environ in (
            (["--bundle-registry-mirror", mirror.host], {}),
            ([], {"BUNDLE_REGISTRY_MIRRORS": mirror.host}),
        ):
            data, served = fetch(args, environ)
            assert served == []  # its certificate is not trusted: not one request got through
            assert "TLS" in capfd.readouterr().err
            assert data == genuine  # from the image's own registry
        named = ["--bundle-registry-mirror", mirror.host, "--bundle-insecure-registry", mirror.host]
        assert fetch(named, {})[1] != []
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate))  # trusted: used, and verified
        assert fetch(["--bundle-registry-mirror", mirror.host], {})[1] != []


def test_credentials_go_only_to_the_registrys_own_scheme_and_host():
    """The rule both request paths apply to every hop of a redirect. Tested as a function: no real registry
    redirects from https to plain http, or to a port of its own host that it does not serve."""
    own = "https://registry.example:5000"
    assert same_origin("https://registry.example:5000/v2/x/blobs/sha256:ab", own)
    assert same_origin("HTTPS://Registry.Example:5000/v2/", own)
    assert not same_origin("http://registry.example:5000/v2/x/blobs/sha256:ab", own)  # http after https
    assert not same_origin("https://registry.example:5001/v2/", own)
    assert not same_origin("https://storage.example/blob", own)
    assert not same_origin("https://registry.example/v2/", own)

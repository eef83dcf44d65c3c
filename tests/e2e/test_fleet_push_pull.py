"""bundler push / pull against Debian's docker-registry on loopback: the executable pulled is the one pushed
(sha256 by hashlib and by `sha256sum -c`, not by our code), a second push sends no blob (the registry's own access
log), bearer tokens from a docker config.json, chunked uploads, one tag for one version."""

import hashlib
import json
import subprocess
import urllib.request

import pytest

from payload.oci.registry import RegistryClient
from testing.bundles import make_bundle
from testing.helpers import bundler
from testing.registry import Registry, TokenService, write_auth_file
from tests.conftest import require_registry_tools

UPLOADS = ("POST", "PUT", "PATCH")


@pytest.fixture
def registry(tmp_path):
    require_registry_tools()
    with Registry(tmp_path / "storage") as running:
        yield running


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def blob_uploads(registry, since=0):
    return [r for r in registry.served(since) if r["method"] in UPLOADS and "/blobs/uploads/" in r["uri"]]


def test_push_then_pull_gives_the_same_file_and_a_second_push_sends_no_blob(tmp_path, plain_stub, registry):
    bundle, index = make_bundle(tmp_path / "b", plain_stub)
    target = f"{registry.host}/fleet/demo:1.0.0"
    bundler("push", bundle, target)
    assert blob_uploads(registry), "the first push uploaded nothing"
    mark = len(registry.served())
    again = bundler("push", bundle, target)
    assert blob_uploads(registry, mark) == []
    assert "sent 0 B" in again.stderr
    out = tmp_path / "pulled" / "demo"
    bundler("pull", target, "--output", out)
    assert sha256_of(out) == sha256_of(bundle)
    subprocess.run(["sha256sum", "-c", out.name + ".sha256"], cwd=out.parent, check=True, capture_output=True)
    assert not list(out.parent.glob(".*"))  # no download dir or temp left
    # The artifact as any OCI client sees it: an image index, one manifest per bundle, our artifactType.
    with urllib.request.urlopen(
        urllib.request.Request(
            f"{registry.url}/v2/fleet/demo/manifests/1.0.0",
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        )
    ) as answer:
        tag_index = json.load(answer)
    assert [m["platform"] for m in tag_index["manifests"]] == [{"architecture": "amd64", "os": "linux"}]
    assert tag_index["manifests"][0]["annotations"]["vnd.bundler.bundle-id"] == index.bundle_id


def test_a_new_version_replaces_the_old_under_the_tag_and_keeps_both_by_version(tmp_path, plain_stub, registry):
    old, _ = make_bundle(tmp_path / "a", plain_stub, version="1.0.0")
    new, _ = make_bundle(tmp_path / "b", plain_stub, version="1.0.1")
    bundler("push", old, f"{registry.host}/fleet/demo:latest")
    bundler("push", old, f"{registry.host}/fleet/demo:1.0.0")
    moved = bundler("push", new, f"{registry.host}/fleet/demo:latest")
    assert "no longer lists demo 1.0.0 amd64/default" in moved.stderr
    bundler("pull", f"{registry.host}/fleet/demo:latest", "--output", tmp_path / "latest")
    bundler("pull", f"{registry.host}/fleet/demo:1.0.0", "--output", tmp_path / "old")
    assert sha256_of(tmp_path / "latest") == sha256_of(new)
    assert sha256_of(tmp_path / "old") == sha256_of(old)


def test_pull_errors_are_one_line_with_their_exit_code(tmp_path, plain_stub, registry):
    bundle, _ = make_bundle(tmp_path / "b", plain_stub)
    bundler("push", bundle, f"{registry.host}/fleet/demo:1")
    out = tmp_path / "out"
    missing = bundler("pull", f"{registry.host}/fleet/demo:2", "--output", out, check=False)
    assert missing.returncode == 5 and "not found" in missing.stderr and len(missing.stderr.splitlines()) == 1
    other = bundler("pull", f"{registry.host}/fleet/demo:1", "--arch", "arm64", "--output", out, check=False)
    assert other.returncode == 2 and "no bundle for arm64" in other.stderr and "amd64/default" in other.stderr
    assert not out.exists()
    split = bundler("split", bundle, "--size", "64K", "--output", tmp_path / "split" / "demo")
    refused = bundler("push", tmp_path / "split" / "demo", f"{registry.host}/fleet/demo:1", check=False)
    assert split.returncode == 0 and refused.returncode == 2 and "split bundle" in refused.stderr


def test_chunked_upload_with_bearer_tokens_from_a_config_json(tmp_path, plain_stub, monkeypatch):
    """Push as a known user through the token service (scope pull,push), in chunks of 4 KiB (PATCH)."""
    require_registry_tools()
    from bundler.fleet.pull import pull
    from bundler.fleet.push import push

    bundle, _ = make_bundle(
        tmp_path / "b", plain_stub, files={"bin/hello": (b"#!/bin/sh\n" + bytes(range(256)) * 200, "0755")}, level=1
    )
    (tmp_path / "token").mkdir()
    tokens = TokenService(tmp_path / "token", users={"robot": "pw"})
    try:
        with Registry(tmp_path / "storage", token=tokens) as registry:
            monkeypatch.setenv(
                "REGISTRY_AUTH_FILE", str(write_auth_file(tmp_path / "auth.json", registry.host, "robot", "pw"))
            )
            target = f"{registry.host}/fleet/demo:1"
            with RegistryClient(progress=False) as client:
                client.upload_chunk = 4096
                push([bundle], target, client, log=lambda line: None)
            patches = [r for r in registry.served() if r["method"] == "PATCH"]
            assert len(patches) >= 3
            assert any("push" in fields.get("scope", "") for _, fields, _ in tokens.requests)
            with RegistryClient(progress=False) as client:
                pull(target, tmp_path / "pulled", client, log=lambda line: None)
            assert sha256_of(tmp_path / "pulled") == sha256_of(bundle)
    finally:
        tokens.close()


def test_several_architectures_of_one_version_under_one_tag(tmp_path, plain_stub, registry):
    """amd64 and arm64 of one version pushed at once, riscv64 added by a second push. The arm64 and riscv64 stubs
    are the amd64 stand-in with its ELF machine field set (EM_AARCH64 183, EM_RISCV 243): push and pull never
    run a stub, and `make` checks only that field of a stub it is given."""
    stubs = {"amd64": plain_stub}
    for arch, machine in (("arm64", 183), ("riscv64", 243)):
        data = bytearray(plain_stub.read_bytes())
        data[18:20] = machine.to_bytes(2, "little")
        stubs[arch] = tmp_path / ("stub-" + arch)
        stubs[arch].write_bytes(bytes(data))
    bundles = {arch: make_bundle(tmp_path / arch, stub, arch=arch)[0] for arch, stub in stubs.items()}
    target = f"{registry.host}/fleet/demo:1.0.0"
    bundler("push", bundles["amd64"], bundles["arm64"], target)
    bundler("push", bundles["riscv64"], target)
    with urllib.request.urlopen(
        urllib.request.Request(
            f"{registry.url}/v2/fleet/demo/manifests/1.0.0",
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        )
    ) as answer:
        platforms = [m["platform"]["architecture"] for m in json.load(answer)["manifests"]]
    assert platforms == ["amd64", "arm64", "riscv64"]
    for arch, bundle in bundles.items():
        out = tmp_path / "pulled" / arch
        bundler("pull", target, "--arch", arch, "--output", out)
        assert sha256_of(out) == sha256_of(bundle)
    ambiguous = bundler("pull", target, "--output", tmp_path / "any", check=False)
    assert ambiguous.returncode == 2 and "--arch" in ambiguous.stderr
    mixed, _ = make_bundle(tmp_path / "v2", stubs["arm64"], arch="arm64", version="2.0.0")
    refused = bundler("push", bundles["amd64"], mixed, target, check=False)
    assert refused.returncode == 2 and "one version of one bundle" in refused.stderr


def test_an_interrupted_pull_resumes(tmp_path, plain_stub, registry):
    """A proxy in front of the registry cuts the bootloader's blob after 1000 bytes on each of the client's 4
    attempts (as a registry that dies mid-transfer does); the next pull resumes it with Range."""
    from testing.registry import FaultProxy

    bundle, _ = make_bundle(tmp_path / "b", plain_stub)
    bundler("push", bundle, f"{registry.host}/fleet/demo:1")
    manifest = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(
                f"{registry.url}/v2/fleet/demo/manifests/1",
                headers={"Accept": "application/vnd.oci.image.index.v1+json"},
            )
        ).read()
    )["manifests"][0]["digest"]
    layers = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(
                f"{registry.url}/v2/fleet/demo/manifests/{manifest}",
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            )
        ).read()
    )["layers"]
    [stub] = [layer for layer in layers if layer["mediaType"] == "application/vnd.bundler.stub.v1"]
    assert stub["size"] > 5000
    out = tmp_path / "pulled"
    with FaultProxy(registry.port) as proxy:
        proxy.cut_blob(stub["digest"], after=1000, times=4)
        cut = bundler("pull", f"{proxy.host}/fleet/demo:1", "--output", out, check=False)
        assert cut.returncode == 5 and "run again to resume" in cut.stderr, cut.stderr
        assert not out.exists()
        partial = tmp_path / ".pulled.pull" / (stub["digest"][7:] + ".partial")
        assert partial.stat().st_size == 4000
        bundler("pull", f"{proxy.host}/fleet/demo:1", "--output", out)
        assert proxy.blob_requests(stub["digest"])[-1].get("Range") == "bytes=4000-"
    assert sha256_of(out) == sha256_of(bundle)
    assert not (tmp_path / ".pulled.pull").exists()

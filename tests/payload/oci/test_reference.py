import hashlib

import pytest

from payload.errors import IntegrityError, UsageError
from payload.oci.reference import (
    Platform,
    Reference,
    parse_platform,
    parse_reference,
    parse_registry_host,
    platform_for_arch,
    select_platform,
    verify_bytes,
)

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "text, expected",
    [
        ("busybox", Reference("registry-1.docker.io", "library/busybox", "latest", None)),
        ("busybox:1.36", Reference("registry-1.docker.io", "library/busybox", "1.36", None)),
        ("library/busybox", Reference("registry-1.docker.io", "library/busybox", "latest", None)),
        ("rancher/k3s:v1.30.1-k3s1", Reference("registry-1.docker.io", "rancher/k3s", "v1.30.1-k3s1", None)),
        ("docker.io/x/y", Reference("registry-1.docker.io", "x/y", "latest", None)),
        ("docker.io/busybox", Reference("registry-1.docker.io", "library/busybox", "latest", None)),
        ("index.docker.io/library/alpine:3", Reference("registry-1.docker.io", "library/alpine", "3", None)),
        ("registry.k8s.io/pause:3.10", Reference("registry.k8s.io", "pause", "3.10", None)),
        ("ghcr.io/org/team/app:v2", Reference("ghcr.io", "org/team/app", "v2", None)),
        ("localhost/app", Reference("localhost", "app", "latest", None)),
        (f"localhost:5000/a/b@{DIGEST}", Reference("localhost:5000", "a/b", None, DIGEST)),
        (f"127.0.0.1:5000/a/b:1@{DIGEST}", Reference("127.0.0.1:5000", "a/b", "1", DIGEST)),
        ("[::1]:5000/a:2", Reference("[::1]:5000", "a", "2", None)),
        # No dot, no port, not localhost: docker reads the first part as a Docker Hub namespace.
        ("myregistry/app", Reference("registry-1.docker.io", "myregistry/app", "latest", None)),
    ],
)
def test_references_are_normalised_as_docker_does(text, expected):
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        " busybox",
        "BusyBox",
        "busybox:",
        "busybox:bad/tag",
        "busybox@sha256:abc",
        "busybox@md5:" + "a" * 32,
        "registry.io/a//b",
        "-registry.io/a",
        "busybox:" + "t" * 129,
        None,
    ],
)
def test_invalid_references_are_usage_errors(text):
    with pytest.raises(UsageError) as caught:
        parse_reference(text)
    assert caught.value.exit_code == 2
    assert repr(text) in str(caught.value)


def test_fully_qualified_name_is_what_containerd_and_docker_record():
    assert parse_reference("busybox").fully_qualified() == "docker.io/library/busybox:latest"
    assert parse_reference("registry.k8s.io/pause:3.10").fully_qualified() == "registry.k8s.io/pause:3.10"
    pinned = parse_reference("busybox:1.36").with_digest(DIGEST)
    assert pinned.fully_qualified() == "docker.io/library/busybox:1.36"
    assert str(pinned) == f"docker.io/library/busybox:1.36@{DIGEST}"
    by_digest = parse_reference(f"localhost:5000/a/b@{DIGEST}")
    assert by_digest.fully_qualified() == f"localhost:5000/a/b@{DIGEST}"
    assert parse_reference(str(pinned)) == pinned


def test_with_digest_refuses_a_malformed_digest():
    with pytest.raises(UsageError):
        parse_reference("busybox").with_digest("sha256:short")


@pytest.mark.parametrize(
    "arch, platform",
    [
        ("amd64", "linux/amd64"),
        ("arm64", "linux/arm64"),
        ("arm", "linux/arm/v7"),
        ("riscv64", "linux/riscv64"),
    ],
)
def test_platform_for_each_bundle_architecture(arch, platform):
    assert str(platform_for_arch(arch)) == platform
    assert parse_platform(platform) == platform_for_arch(arch)


def test_platform_parsing_and_errors():
    assert parse_platform("linux/arm/v7") == Platform("linux", "arm", "v7")
    assert parse_platform("linux/amd64") == Platform("linux", "amd64", "")
    for bad in ("linux", "linux/arm/v7/x", "Linux/AMD64", "linux//v7", ""):
        with pytest.raises(UsageError):
            parse_platform(bad)
    with pytest.raises(UsageError) as caught:
        platform_for_arch("mips")
    assert "amd64, arm64, arm, riscv64" in str(caught.value)


def test_variant_defaults_match_as_containerd_compares_them():
    assert Platform("linux", "arm64", "v8").matches(Platform("linux", "arm64"))
    assert Platform("linux", "arm", "").matches(Platform("linux", "arm", "v7"))
    assert not Platform("linux", "arm", "v6").matches(Platform("linux", "arm", "v7"))
    assert not Platform("linux", "amd64").matches(Platform("linux", "arm64"))


def test_select_platform_skips_attestations_and_names_what_exists():
    index = {
        "manifests": [
            {"digest": "sha256:" + "1" * 64, "platform": {"os": "unknown", "architecture": "unknown"}},
            {
                "digest": "sha256:" + "2" * 64,
                "platform": {"os": "linux", "architecture": "arm64"},
                "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
            },
            {"digest": "sha256:" + "3" * 64, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": "sha256:" + "4" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
        ]
    }
    assert select_platform(index, platform_for_arch("arm64"), "img")["digest"] == "sha256:" + "3" * 64
    with pytest.raises(UsageError) as caught:
        select_platform(index, platform_for_arch("riscv64"), "example/img:1")
    message = str(caught.value)
    assert "example/img:1" in message and "linux/riscv64" in message
    assert "linux/amd64, linux/arm64/v8" in message and "unknown" not in message


def test_verify_bytes():
    data = b"config"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert verify_bytes(data, digest, "x") == data
    with pytest.raises(IntegrityError) as caught:
        verify_bytes(data + b" ", digest, "config of x")
    assert caught.value.exit_code == 3 and digest in str(caught.value)


def test_registry_hosts_for_mirrors_and_insecure_lists():
    assert parse_registry_host("https://Mirror.Example:5000/") == "mirror.example:5000"
    assert parse_registry_host("docker.io") == "registry-1.docker.io"
    assert parse_registry_host("10.0.0.5:5000") == "10.0.0.5:5000"
    with pytest.raises(UsageError):
        parse_registry_host("not a host")

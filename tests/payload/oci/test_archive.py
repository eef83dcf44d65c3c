"""Image archives: what we write must be read by skopeo (oci-archive: and docker-archive:), what skopeo writes
must be read by us. ctr/podman acceptance is covered by the end-to-end tests."""

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile

import pytest

from bundler.images.archive import read_image_archive, uncompress_layer, uncompressed_manifest
from payload.errors import IntegrityError, UsageError
from payload.oci.archive import blob_path, write_image_archive
from payload.oci.reference import parse_platform, parse_reference, platform_for_arch
from payload.oci.registry import RegistryClient

AMD64 = platform_for_arch("amd64")


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def skopeo(*args) -> str:
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def tar_names(path) -> list:
    return subprocess.run(["tar", "-tf", str(path)], check=True, capture_output=True, text=True).stdout.split()


@pytest.fixture(scope="module")
def pulled(images, tmp_path_factory):
    """The derived image (two gzip layers) as pulled from the registry: resolved image and blob paths."""
    directory = tmp_path_factory.mktemp("pulled")
    with RegistryClient(progress=False) as client:
        resolved = client.resolve(images.derived, AMD64)
        paths = {}
        for layer in resolved.layers:
            paths[layer.digest] = client.fetch_blob(resolved.reference, layer.digest, str(directory / layer.digest[7:]))
    return resolved, paths


def test_archive_of_a_pulled_image_is_read_by_skopeo_both_ways(pulled, tmp_path):
    resolved, paths = pulled
    ref = parse_reference("registry.example:5000/team/app:v1")
    archive = tmp_path / "app.tar"
    write_image_archive(str(archive), ref, resolved.manifest_bytes, resolved.config_bytes, paths)

    names = tar_names(archive)
    assert {"oci-layout", "index.json", "manifest.json"} <= set(names)
    assert len([n for n in names if n.startswith("blobs/sha256/") and len(n) > 13]) == 2 + len(resolved.layers)

    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
        docker = json.load(tar.extractfile("manifest.json"))
    (entry,) = index["manifests"]
    assert entry["annotations"] == {
        "io.containerd.image.name": "registry.example:5000/team/app:v1",
        "org.opencontainers.image.ref.name": "v1",
    }
    assert entry["digest"] == resolved.manifest_digest and entry["platform"] == {"architecture": "amd64", "os": "linux"}
    assert docker == [
        {
            "Config": blob_path(resolved.config.digest),
            "RepoTags": ["registry.example:5000/team/app:v1"],
            "Layers": [blob_path(layer.digest) for layer in resolved.layers],
        }
    ]

    inspected = json.loads(skopeo("inspect", f"oci-archive:{archive}"))
    assert inspected["Digest"] == resolved.manifest_digest
    assert inspected["Layers"] == [layer.digest for layer in resolved.layers]

    copied = tmp_path / "copied"
    skopeo("copy", "--quiet", f"oci-archive:{archive}", f"dir:{copied}")
    assert (copied / "manifest.json").read_bytes() == resolved.manifest_bytes
    for layer in resolved.layers:
        assert sha256_of((copied / layer.digest[7:]).read_bytes()) == layer.digest

    # skopeo finds the image by the name in RepoTags.
    docker_inspected = json.loads(skopeo("inspect", f"docker-archive:{archive}:registry.example:5000/team/app:v1"))
    assert docker_inspected["Name"] == "registry.example:5000/team/app"
    from_docker = tmp_path / "from-docker"
    skopeo("copy", "--quiet", f"docker-archive:{archive}", f"dir:{from_docker}")
    config = json.loads(resolved.config_bytes)
    docker_manifest = json.loads((from_docker / "manifest.json").read_text())
    assert docker_manifest["config"]["digest"] == resolved.config.digest  # the image id is kept
    assert [layer["digest"] for layer in docker_manifest["layers"]] == config["rootfs"]["diff_ids"]


def test_uncompressed_layers_keep_the_image_id(pulled, tmp_path):
    resolved, paths = pulled
    config = json.loads(resolved.config_bytes)
    raw_paths, layers_info = {}, []
    for layer in resolved.layers:
        dest = tmp_path / (layer.digest[7:] + ".tar")
        digest, size = uncompress_layer(paths[layer.digest], layer.media_type, str(dest))
        # Independent check: gunzip and sha256sum.
        expected = subprocess.run(
            f"gzip -dc {paths[layer.digest]} | sha256sum", shell=True, check=True, capture_output=True, text=True
        ).stdout.split()[0]
        assert digest == "sha256:" + expected and size == dest.stat().st_size
        raw_paths[digest] = str(dest)
        layers_info.append((digest, size))
    assert [d for d, _ in layers_info] == config["rootfs"]["diff_ids"]

    manifest = uncompressed_manifest(resolved.manifest_bytes, resolved.config_bytes, layers_info)
    document = json.loads(manifest)
    assert document["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert document["config"]["digest"] == resolved.config.digest
    assert [(x["mediaType"], x["digest"], x["size"]) for x in document["layers"]] == [
        ("application/vnd.oci.image.layer.v1.tar", d, s) for d, s in layers_info
    ]

    archive = tmp_path / "raw.tar"
    write_image_archive(str(archive), parse_reference("busybox:raw"), manifest, resolved.config_bytes, raw_paths)
    inspected = json.loads(skopeo("inspect", "--raw", f"oci-archive:{archive}"))
    assert inspected == document
    copied = tmp_path / "copied"
    skopeo("copy", "--quiet", f"oci-archive:{archive}", f"dir:{copied}")
    assert json.loads((copied / "manifest.json").read_text())["config"]["digest"] == resolved.config.digest
    skopeo("inspect", f"docker-archive:{archive}")


def test_uncompressed_manifest_refuses_layers_that_are_not_the_diff_ids(pulled):
    resolved, _ = pulled
    wrong = [("sha256:" + "1" * 64, 10)] * len(resolved.layers)
    with pytest.raises(IntegrityError):
        uncompressed_manifest(resolved.manifest_bytes, resolved.config_bytes, wrong)


def test_uncompress_layer_of_zstd_and_plain_tar(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    raw = os.urandom(1000) * 50
    (tmp_path / "layer.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    (tmp_path / "layer.tar").write_bytes(raw)
    for name, media_type in (
        ("layer.zst", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("layer.tar", "application/vnd.oci.image.layer.v1.tar"),
    ):
        assert uncompress_layer(str(tmp_path / name), media_type, str(tmp_path / "out")) == (sha256_of(raw), len(raw))
        assert (tmp_path / "out").read_bytes() == raw
    (tmp_path / "bad.gz").write_bytes(gzip.compress(raw)[:-20])
    with pytest.raises(IntegrityError):
        uncompress_layer(str(tmp_path / "bad.gz"), "application/vnd.oci.image.layer.v1.tar+gzip", str(tmp_path / "o"))


def _tiny_image(layers):
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256_of(x) for x in layers]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_of(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256_of(x), "size": len(x)}
                for x in layers
            ],
        }
    ).encode()
    return manifest, config


def test_a_layer_listed_twice_is_stored_once_and_blobs_may_come_from_a_callable(tmp_path):
    layer = b"x" * 3000
    manifest, config = _tiny_image([layer, layer])
    archive = tmp_path / "img.tar"
    write_image_archive(
        str(archive),
        parse_reference("localhost/img@" + sha256_of(manifest)),
        manifest,
        config,
        lambda digest: io.BytesIO(layer),
        verify=True,
    )
    assert tar_names(archive).count(blob_path(sha256_of(layer))) == 1
    with tarfile.open(archive) as tar:
        entry = json.load(tar.extractfile("index.json"))["manifests"][0]
        assert json.load(tar.extractfile("manifest.json"))[0]["RepoTags"] == []
    assert entry["annotations"] == {"io.containerd.image.name": "localhost/img@" + sha256_of(manifest)}
    skopeo("inspect", f"oci-archive:{archive}")


@pytest.mark.parametrize("fault", ["missing", "short", "wrong-bytes"])
def test_bad_layers_leave_no_archive_behind(tmp_path, fault):
    layer = b"y" * 5000
    manifest, config = _tiny_image([layer])
    archive = tmp_path / "img.tar"
    archive.write_bytes(b"the previous archive")
    layer_file = tmp_path / "layer"
    layer_file.write_bytes({"missing": layer, "short": layer[:-1], "wrong-bytes": b"z" * 5000}[fault])
    blobs = {} if fault == "missing" else {sha256_of(layer): str(layer_file)}
    with pytest.raises(IntegrityError):
        write_image_archive(str(archive), parse_reference("localhost/img:1"), manifest, config, blobs, verify=True)
    assert archive.read_bytes() == b"the previous archive"
    assert sorted(os.listdir(tmp_path)) == ["img.tar", "layer"]


def test_read_oci_archive_written_by_skopeo(images, tmp_path):
    archive = tmp_path / "skopeo-oci.tar"
    skopeo("copy", "--quiet", "--src-tls-verify=false", f"docker://{images.derived}", f"oci-archive:{archive}")
    manifest, config, open_blob = read_image_archive(str(archive))
    assert manifest == images.layout.blob(images.digest("derived"))
    assert sha256_of(config) == json.loads(manifest)["config"]["digest"]
    for layer in json.loads(manifest)["layers"]:
        with open_blob(layer["digest"]) as reader:
            assert sha256_of(reader.read()) == layer["digest"]


def test_read_docker_archive_written_by_skopeo(images, tmp_path):
    archive = tmp_path / "skopeo-docker.tar"
    skopeo(
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        f"docker://{images.derived}",
        f"docker-archive:{archive}:example/derived:1",
    )
    manifest, config, open_blob = read_image_archive(str(archive))
    expected_config = images.layout.blob(images.layout.manifest("derived")["config"]["digest"])
    assert config == expected_config
    document = json.loads(manifest)
    assert document["config"]["digest"] == sha256_of(expected_config)
    diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    assert [layer["digest"] for layer in document["layers"]] == diff_ids  # skopeo stores them uncompressed
    for layer in document["layers"]:
        with open_blob(layer["digest"]) as reader:
            data = reader.read()
        assert sha256_of(data) == layer["digest"] and len(data) == layer["size"]


def test_read_multi_platform_oci_archive_needs_the_platform(images, tmp_path):
    archive = tmp_path / "multi.tar"
    skopeo("copy", "--quiet", "--all", "--src-tls-verify=false", f"docker://{images.multi}", f"oci-archive:{archive}")
    manifest, _, _ = read_image_archive(str(archive), parse_platform("linux/arm/v7"))
    assert sha256_of(manifest) == images.digest("armv7")
    with pytest.raises(UsageError):
        read_image_archive(str(archive))


def test_round_trip_and_a_tampered_blob_is_caught_when_read(pulled, tmp_path):
    resolved, paths = pulled
    archive = tmp_path / "app.tar"
    write_image_archive(
        str(archive), parse_reference("localhost/app:1"), resolved.manifest_bytes, resolved.config_bytes, paths
    )
    manifest, config, open_blob = read_image_archive(str(archive))
    assert (manifest, config) == (resolved.manifest_bytes, resolved.config_bytes)
    layer = resolved.layers[0]
    with tarfile.open(archive) as tar:
        offset = tar.getmember(blob_path(layer.digest)).offset_data
    with open(archive, "r+b") as handle:
        handle.seek(offset + 100)
        byte = handle.read(1)
        handle.seek(offset + 100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with open_blob(layer.digest) as reader, pytest.raises(IntegrityError):
        reader.read()


def test_reading_something_that_is_not_an_image_archive(tmp_path):
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        tar.addfile(tarfile.TarInfo("hello"), io.BytesIO(b""))
    with pytest.raises(UsageError) as caught:
        read_image_archive(str(plain))
    assert "oci-archive" in str(caught.value)
    with pytest.raises(UsageError):
        read_image_archive(str(tmp_path / "missing.tar"))
    (tmp_path / "x.tar.gz").write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(UsageError) as caught:
        read_image_archive(str(tmp_path / "x.tar.gz"))
    assert "compressed" in str(caught.value)

"""bundler/images in-process, on real OCI archives (umoci + skopeo, no registry): embedded images become blob
members stored once however many images share them, raw layers are plain tars, exact keeps the manifest."""

import hashlib
import json
import shutil
import tarfile

import pytest

from bundler.cache import Cache
from bundler.images.embed import embed_images, pin_images
from bundler.manifest import load_manifest
from bundler.manifest.lockfile import Lock
from payload.index import LAYERS_EXACT, LAYERS_RAW
from payload.oci.archive import write_image_archive
from payload.oci.reference import parse_reference
from testing.helpers import bundler
from testing.images import build_solo_images

MANIFEST = """
[bundle]
name = "imgs"
version = "1.0.0"
entrypoint = ["bin/run"]

[[file]]
path = "bin/run"
mode = "0755"
source = { url = "run" }

[[image]]
name = "hello"
ref = "oci-archive:hello.tar"

[[image]]
name = "world"
ref = "oci-archive:world.tar"

[variants.offline]
embed = "all"
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    missing = [tool for tool in ("umoci", "skopeo") if shutil.which(tool) is None]
    if missing:
        pytest.skip(reason="needs {} (scripts/setup installs them)".format(", ".join(missing)))
    work = tmp_path_factory.mktemp("images-project")
    images = build_solo_images(work / "layout")
    images.write_archives(work)
    (work / "run").write_text("#!/bin/sh\n")
    (work / "bundle.toml").write_text(MANIFEST)
    return work, images


def embed(project, tmp_path, mode):
    work, _ = project
    manifest = load_manifest(work / "bundle.toml")
    pinned = pin_images(manifest, manifest.variant("offline"), Lock(), "amd64", None, False, log=lambda _: None)
    cache = Cache(tmp_path / "cache")
    return embed_images(pinned, None, cache, mode, log=lambda _: None), pinned, cache


def test_raw_layers_shared_by_two_images_are_stored_once(project, tmp_path):
    (members, records), pinned, _ = embed(project, tmp_path, LAYERS_RAW)
    # two manifests, two configs, the shared busybox layer once, world's own layer
    assert len(members) == 6 and len({m.sha256 for m in members}) == 6
    for member in members:
        assert member.kind == "blob" and member.path == "images/blobs/sha256/" + member.sha256
        assert hashlib.sha256(member.source.read_bytes()).hexdigest() == member.sha256
    by_digest = {"sha256:" + m.sha256: m for m in members}
    for record, image in zip(records, pinned):
        assert record.embedded and record.layers == LAYERS_RAW and record.digest == image.digest
        assert record.manifest in by_digest and record.manifest != image.digest  # raw changes the manifest
    layer_tars = [m for m in members if tarfile.is_tarfile(m.source)]
    assert len(layer_tars) == 2  # the raw layers are plain tars


def test_exact_keeps_the_registry_manifest_byte_for_byte(project, tmp_path):
    (members, records), pinned, _ = embed(project, tmp_path, LAYERS_EXACT)
    digests = {"sha256:" + m.sha256 for m in members}
    for record, image in zip(records, pinned):
        assert record.manifest == image.digest and record.manifest in digests


def test_a_second_embed_takes_the_raw_layers_from_the_cache(project, tmp_path):
    (first, _), _, cache = embed(project, tmp_path, LAYERS_RAW)
    work, _ = project
    manifest = load_manifest(work / "bundle.toml")
    pinned = pin_images(manifest, manifest.variant("offline"), Lock(), "amd64", None, False, log=lambda _: None)
    second, _ = embed_images(pinned, None, cache, LAYERS_RAW, log=lambda _: None)
    assert [(m.path, m.sha256) for m in second] == [(m.path, m.sha256) for m in first]
    assert not list(cache.tmp.iterdir())


# ---------------------------------------------------------------- an archive changed after `bundler lock`
# (the real CLI with a stand-in stub: what is embedded is what the lock pinned)

PINNED_MANIFEST = """
[bundle]
name = "imgs"
version = "1.0.0"
entrypoint = ["bin/hello"]

[[file]]
path = "bin/hello"
mode = "0755"
source = { url = "hello" }

[[image]]
name = "app"
ref = "oci-archive:app.tar"
"""


def _digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_archive(path, greeting):
    layer = greeting * 64
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]}}
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(layer), "size": len(layer)}
            ],
        }
    ).encode()
    (path.parent / "layer").write_bytes(layer)
    write_image_archive(
        str(path),
        parse_reference("localhost/app:latest"),
        manifest,
        config,
        {_digest(layer): str(path.parent / "layer")},
    )
    return _digest(manifest)


def test_a_local_image_archive_changed_since_the_lock_is_refused(tmp_path, plain_stub):
    work = tmp_path / "project"
    work.mkdir()
    (work / "hello").write_text("#!/bin/sh\necho hello\n")
    (work / "bundle.toml").write_text(PINNED_MANIFEST)
    pinned = write_archive(work / "app.tar", b"hello ")  # and a cold cache: its config comes from the archive too
    cache = tmp_path / "cache"
    bundler("lock", "--arch", "amd64", "--cache-dir", cache, cwd=work)
    made = bundler(
        "make", "--locked", "--stub", plain_stub, "--cache-dir", cache, "--level", "3", "-o", "app", cwd=work
    )
    assert made.returncode == 0
    info = json.loads(bundler("inspect", "--json", work / "app").stdout)
    assert [(i["name"], i["digest"]) for i in info["images"]] == [("app", pinned)]

    changed = write_archive(work / "app.tar", b"other ")
    failed = bundler(
        "make", "--locked", "--stub", plain_stub, "--cache-dir", cache, "-o", "app2", cwd=work, check=False
    )
    assert failed.returncode == 3, failed.stderr
    assert "app.tar" in failed.stderr and changed in failed.stderr and pinned in failed.stderr
    assert "bundler lock" in failed.stderr and "Traceback" not in failed.stderr
    assert not (work / "app2").exists()

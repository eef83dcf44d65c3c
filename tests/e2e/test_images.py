"""Images end to end against a real registry (Debian's docker-registry on loopback): pinned at bundle time,
embedded in the offline variant, pulled by digest at the online variant's first start."""

import json
import subprocess

import pytest

from testing.bundles import images_manifest, images_project
from testing.helpers import bundler, run
from testing.registry import Registry, push

IMAGES = {"base": "test/busybox:1", "derived": "test/derived:1"}


def manifest(host, images=IMAGES):
    """The image project: online embeds `base` and pulls the rest before it starts (tests/e2e/test_background_pulls.py
    has the default, in the background), offline embeds every image."""
    return images_manifest(host, images, online_embed=["base"], pull="before-start")


@pytest.fixture(scope="module")
def registry(tmp_path_factory, image_layout):
    reg = Registry(tmp_path_factory.mktemp("e2e-registry")).start()
    push(image_layout, "base", reg, "test/busybox:1")
    push(image_layout, "derived", reg, "test/derived:1")
    push(image_layout, "multi", reg, "test/multi:1", all_platforms=True)
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory, registry):
    return images_project(tmp_path_factory.mktemp("img-project"), manifest(registry.host))


def _make(project, cache_dir, variant, *extra):
    out = project / "dist" / ("{}-{}".format(variant, "-".join(extra) or "default"))
    bundler("make", "--variant", variant, "--cache-dir", cache_dir, "--level", "3", "-o", out, *extra, cwd=project)
    return out


def _layout_config(layout, tag):
    return json.loads(layout.blob(layout.manifest(tag)["config"]["digest"]))


def test_offline_embeds_every_image_and_shares_the_base_layer(project, cache_dir, image_layout, tmp_path):
    exe = _make(project, cache_dir, "offline")
    info = json.loads(bundler("inspect", "--json", exe).stdout)
    images = {i["name"]: i for i in info["images"]}
    assert images["base"]["embedded"] and images["derived"]["embedded"]
    assert images["base"]["digest"] == image_layout.manifest_digest("base")
    assert images["derived"]["digest"] == image_layout.manifest_digest("derived")
    # Raw layers are stored by their diff_id; the base layer appears once although both images use it.
    diff_ids = set()
    for tag in ("base", "derived"):
        diff_ids.update(_layout_config(image_layout, tag)["rootfs"]["diff_ids"])
    configs = {image_layout.manifest(t)["config"]["digest"] for t in ("base", "derived")}
    manifests = {i["manifest"] for i in images.values()}
    blob_entries = sorted(e["path"] for e in info["entries"] if e["kind"] == "blob")
    expected = sorted("images/blobs/sha256/" + d.split(":")[1] for d in diff_ids | configs | manifests)
    assert blob_entries == expected

    root = tmp_path / "root"
    result = run([exe, "--bundle-dir", root])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["base.tar", "derived.tar"]
    archive = root / "current" / "images" / "derived.tar"
    # skopeo (not our code) reads the archive, and the image id (config digest) is the registry's.
    inspected = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--raw", f"oci-archive:{archive}"], stdout=subprocess.PIPE, check=True, text=True
        ).stdout
    )
    assert inspected["config"]["digest"] == image_layout.manifest("derived")["config"]["digest"]
    copied = tmp_path / "copied"
    subprocess.run(["skopeo", "copy", "--quiet", f"docker-archive:{archive}", f"dir:{copied}"], check=True)
    assert (copied / "manifest.json").exists()


def test_layers_exact_keeps_the_manifest_digest(project, cache_dir, image_layout, tmp_path):
    exe = _make(project, cache_dir, "offline", "--layers", "exact")
    root = tmp_path / "root"
    assert run([exe, "--bundle-dir", root]).returncode == 0
    archive = root / "current" / "images" / "base.tar"
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci-archive:{archive}"], stdout=subprocess.PIPE, check=True
    ).stdout
    import hashlib

    assert "sha256:" + hashlib.sha256(raw).hexdigest() == image_layout.manifest_digest("base")


def test_online_pulls_at_first_start_then_runs_without_the_registry(project, cache_dir, registry, tmp_path):
    exe = _make(project, cache_dir, "online")
    offline_exe = _make(project, cache_dir, "offline")
    print(f"online {exe.stat().st_size} bytes, offline {offline_exe.stat().st_size} bytes")
    assert exe.stat().st_size < offline_exe.stat().st_size
    info = json.loads(bundler("inspect", "--json", exe).stdout)
    assert {i["name"]: i["embedded"] for i in info["images"]} == {"base": True, "derived": False}
    root = tmp_path / "root"
    first = run([exe, "--bundle-dir", root])
    assert first.returncode == 0, first.stderr
    assert "pulling" in first.stderr and first.stdout.split() == ["base.tar", "derived.tar"]
    registry.stop()
    try:
        second = run([exe, "--bundle-dir", root])
        assert second.returncode == 0, second.stderr
        assert "pulling" not in second.stderr and second.stdout.split() == ["base.tar", "derived.tar"]
        # A device that never pulled, with the registry gone: one line naming image and registry, exit 5,
        # and the installed version kept for the next try.
        other = tmp_path / "other"
        failed = run([exe, "--bundle-dir", other])
        assert failed.returncode == 5, failed.stderr
        error = [line for line in failed.stderr.splitlines() if "error" in line]
        assert len(error) == 1 and registry.host in error[0] and "derived" in error[0]
        assert "--bundle-no-pull" in error[0]
        assert "Traceback" not in failed.stderr
        assert (other / "current" / "images" / "base.tar").exists()
        assert not (other / "current" / "images" / "derived.tar").exists()
        # --bundle-no-pull starts without the images left out.
        assert run([exe, "--bundle-dir", other, "--bundle-no-pull"]).stdout.split() == ["base.tar"]
    finally:
        registry.start()


def test_lock_pins_each_platform_of_an_index(registry, image_layout, tmp_path):
    project = images_project(tmp_path / "multi", manifest(registry.host, {"base": "test/multi:1"}))
    bundler("lock", "--arch", "amd64", "--arch", "arm", "--cache-dir", tmp_path / "cache", cwd=project)
    import tomllib

    lock = tomllib.loads((project / "bundle.lock").read_text())
    pins = {(i["name"], i["platform"]): i["digest"] for i in lock["image"]}
    assert pins[("base", "linux/amd64")] == image_layout.manifest_digest("base")
    assert pins[("base", "linux/arm/v7")] == image_layout.manifest_digest("armv7")


@pytest.fixture
def proxied(tmp_path, registry, image_layout):
    """An online project whose images are named through a fault-injecting proxy in front of the real registry."""
    from testing.registry import FaultProxy

    proxy = FaultProxy(registry.port).start()
    yield images_project(tmp_path / "proxied", manifest(proxy.host)), proxy
    proxy.stop()


def _derived_layer(image_layout):
    return image_layout.manifest("derived")["layers"][-1]["digest"]


def test_pull_cut_mid_blob_resumes_with_range(proxied, cache_dir, image_layout, tmp_path):
    directory, proxy = proxied
    exe = _make(directory, cache_dir, "online")
    layer = _derived_layer(image_layout)
    size = next(item["size"] for item in image_layout.manifest("derived")["layers"] if item["digest"] == layer)
    proxy.cut_blob(layer, after=size // 2, times=1)
    result = run([exe, "--bundle-dir", tmp_path / "root"])
    assert result.returncode == 0, result.stderr
    gets = proxy.blob_requests(layer)
    assert len(gets) == 2 and gets[1]["Range"] == f"bytes={size // 2}-"
    assert result.stdout.split() == ["base.tar", "derived.tar"]


def test_byte_corrupted_in_transit_is_refused(proxied, cache_dir, image_layout, tmp_path):
    directory, proxy = proxied
    exe = _make(directory, cache_dir, "online")
    proxy.flip_blob_byte(_derived_layer(image_layout), at=100, times=None)
    root = tmp_path / "root"
    result = run([exe, "--bundle-dir", root])
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and "sha256" in result.stderr
    assert not (root / "current" / "images" / "derived.tar").exists()


@pytest.mark.parametrize("tear", ["truncated", "flipped byte"])
def test_torn_blob_left_in_pulls_by_a_crash_is_fetched_again(proxied, cache_dir, image_layout, tmp_path, tear):
    """Pulled blobs are not fsync'ed (only the archive is): a crash can leave a finished blob in .pulls that lost
    its tail or holds other bytes. The next start hashes it, fetches it again, and writes a right archive."""
    import hashlib
    import tarfile

    directory, proxy = proxied
    exe = _make(directory, cache_dir, "online")
    root = tmp_path / "root"
    assert run([exe, "--bundle-dir", root, "--bundle-no-pull"]).returncode == 0
    layer = _derived_layer(image_layout)
    good = image_layout.blob(layer)
    pulls = root / ".pulls"
    pulls.mkdir()
    torn = good[: len(good) // 2] if tear == "truncated" else good[:100] + bytes([good[100] ^ 0x40]) + good[101:]
    (pulls / layer[7:]).write_bytes(torn)
    result = run([exe, "--bundle-dir", root])
    assert result.returncode == 0, result.stderr
    assert f"does not hold blob {layer}" in result.stderr
    gets = proxy.blob_requests(layer)
    assert len(gets) == 1 and "Range" not in gets[0]
    with tarfile.open(root / "current" / "images" / "derived.tar") as tar:
        member = tar.extractfile("blobs/sha256/" + layer[7:]).read()
    assert "sha256:" + hashlib.sha256(member).hexdigest() == layer
    assert not pulls.exists()

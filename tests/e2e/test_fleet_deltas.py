"""Deltas end to end: `bundler push --delta-from` publishes a patch of the real containerd shim (Debian's
deb12u2 -> deb12u3) to Debian's docker-registry, which has no referrers API (the tag fallback carries it), and
`./app --bundle-update` with the real stub decodes the shim's group from it, checks it against the signed content
index and encodes it again at the fast level: the new file keeps the bundle id and the signature. The bundles are
made at level 19, not the device's, and push names no level: a delta fits a bundle of any level. What the registry
served is read from its own access log."""

import hashlib
import re
import shutil

import pytest

from payload.delta import REENCODE_LEVEL
from testing import containerd
from testing.faults import build, start, write_project
from testing.helpers import bundler, run
from testing.registry import Registry
from tests.conftest import require_registry_tools


@pytest.fixture(scope="module")
def built(tmp_path_factory, cache_dir, stub_path):
    require_registry_tools()
    keys = tmp_path_factory.mktemp("keys")
    bundler("keygen", "--out", keys / "release")
    found = {"pub": keys / "release.pub"}
    for label, release, version in (("old", containerd.OLD, "1.0.0"), ("new", containerd.NEW, "1.0.1")):
        shim = containerd.release(release).path(containerd.SHIM)
        files = [("bin/containerd-shim-runc-v2", str(shim), "shim"), ("bin/tee", "/usr/bin/tee", "tools")]
        project = write_project(tmp_path_factory.mktemp(label), files, version=version, name="deltas")
        found[label] = build(project, cache_dir, "--stub", stub_path, "--sign", keys / "release.key", level=19)
    return found


@pytest.fixture(scope="module")
def registry(tmp_path_factory, built):
    with Registry(tmp_path_factory.mktemp("storage")) as running:
        bundler("push", built["old"], f"{running.host}/edge/deltas:1.0.0")
        # OLD named by its reference: push pulls it (the bench names a file)
        old = f"{running.host}/edge/deltas:1.0.0"
        pushed = bundler("push", built["new"], f"{running.host}/edge/deltas:1.0.1", "--delta-from", old)
        assert "delta from deltas 1.0.0: 1 patch(es)" in pushed.stderr, pushed.stderr
        yield running


def inspect(bundle):
    import json

    return json.loads(bundler("inspect", bundle, "--json").stdout)


def shim_frame_size(bundle):
    index = inspect(bundle)
    return sum(f["csize"] for g in index["encoding"]["groups"] if g["name"] == "shim" for f in g["frames"])


def device(tmp_path, built):
    app = tmp_path / "dev" / "app"
    app.parent.mkdir()
    shutil.copy(built["old"], app)
    root = tmp_path / "root"
    first = start(app, root, *(("--bundle-key", built["pub"]) if "pub" in built else ()))
    assert first.returncode == 0 and "RAN 1.0.0" in first.stdout, first.stderr
    return app, root


def sha256_of(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_the_update_rebuilds_the_changed_shim_from_its_delta(tmp_path, built, registry):
    app, root = device(tmp_path, built)
    mark = len(registry.served())
    done = start(app, root, "--bundle-update", f"{registry.host}/edge/deltas:1.0.1")
    assert done.returncode == 0, done.stderr
    assert "as deltas: shim" in done.stdout, done.stdout + done.stderr
    assert (
        "applying the delta of group 'shim'" in done.stderr
        and f"encoding at zstd level {REENCODE_LEVEL}" in done.stderr
    )
    served = registry.blob_bytes_served(mark)
    frame = shim_frame_size(built["new"])
    print(f"served {served} bytes of blobs; the shim's frame is {frame}\n{done.stdout}")
    assert served < frame / 20, (served, frame)  # the shim's frame was not fetched: its patch was
    # No referrers API here (404, which this registry logs in its access-log line format), so the tag fallback
    # `sha256-<hex of the new manifest>` served the delta's index.
    assert re.search(r'"GET /v2/edge/deltas/referrers/sha256:[0-9a-f]{64} HTTP/1.1" 404', registry.log())
    assert any(
        re.search(r"/manifests/sha256-[0-9a-f]{64}$", r["uri"]) and r["status"] == "200" for r in registry.served(mark)
    )
    # Another file than the published one (the shim's frame encoded here at the fast level, not 19), the same bundle.
    assert sha256_of(app) != sha256_of(built["new"])
    mine, published = inspect(app), inspect(built["new"])
    assert (mine["bundle_id"], mine["signature"]) == (published["bundle_id"], published["signature"])
    shim_frames = [g["frames"] for g in mine["encoding"]["groups"] if g["name"] == "shim"][0]
    assert [f.get("level") for f in shim_frames] == [REENCODE_LEVEL]
    assert all("level" not in f for g in mine["encoding"]["groups"] if g["name"] != "shim" for f in g["frames"])
    info = run([app, "--bundle-info"])
    print(info.stdout)
    assert info.returncode == 0 and "shim: " in info.stdout, info.stderr
    assert f"re-encoded on this device at zstd level {REENCODE_LEVEL} (a delta update)" in info.stdout, info.stdout
    checked = bundler("verify", app, "--key", built["pub"])  # signature, stub_sha256 and every entry's content
    assert "signature: ok" in checked.stdout, checked.stdout
    installed = root / "current" / "bin" / "containerd-shim-runc-v2"
    packaged = containerd.release(containerd.NEW).md5sums[containerd.SHIM]
    assert hashlib.md5(installed.read_bytes()).hexdigest() == packaged
    # The install linked the files the delta decoded (not the re-encoded frame decoded again): each still holds
    # what the signed index says, summed by another program, with its mode whatever the umask.
    for entry in published["entries"]:
        if entry["kind"] == "file":
            path = root / "current" / entry["path"]
            assert run(["sha256sum", path]).stdout.split()[0] == entry["sha256"], entry["path"]
            assert path.stat().st_mode & 0o7777 == entry["mode"], entry["path"]
    # The key was pinned at the first start: the rebuilt, signed file starts under the pin, and with the key named.
    ran = start(app, root)
    assert ran.returncode == 0 and "RAN 1.0.1" in ran.stdout, ran.stderr
    ran = start(app, root, "--bundle-key", built["pub"])
    assert ran.returncode == 0 and "RAN 1.0.1" in ran.stdout, ran.stderr
    # One install: the rebuilt file is the version the update installed, so its start extracts nothing.
    versions = sorted(p.name for p in (root / "versions").iterdir()) if (root / "versions").is_dir() else None
    assert versions is None or mine["bundle_id"] in versions, versions


def test_the_next_update_takes_the_group_a_delta_re_encoded_from_this_file(
    tmp_path, built, registry, cache_dir, stub_path
):
    """1.0.2 changes only `tee` and has no delta: the shim's frame the device encoded at its fast level holds the
    very content 1.0.2's level-19 frame does, so it is taken from this file, not fetched, and keeps its level."""
    app, root = device(tmp_path, built)
    assert start(app, root, "--bundle-update", f"{registry.host}/edge/deltas:1.0.1").returncode == 0
    shim = containerd.release(containerd.NEW).path(containerd.SHIM)
    files = [("bin/containerd-shim-runc-v2", str(shim), "shim"), ("bin/tee", "/usr/bin/head", "tools")]
    project = write_project(tmp_path / "v102", files, version="1.0.2", name="deltas")
    key = built["pub"].with_suffix(".key")
    newer = build(project, cache_dir, "--stub", stub_path, "--sign", key, level=19)
    bundler("push", newer, f"{registry.host}/edge/deltas:1.0.2")
    mark = len(registry.served())
    done = start(app, root, "--bundle-update", f"{registry.host}/edge/deltas:1.0.2")
    assert done.returncode == 0, done.stderr
    assert "as deltas" not in done.stdout and "applying the delta" not in done.stderr, done.stdout + done.stderr
    assert registry.blob_bytes_served(mark) < shim_frame_size(newer) / 2  # the shim's frame was not fetched
    mine = inspect(app)
    assert mine["bundle_id"] == inspect(newer)["bundle_id"]
    assert [f.get("level") for g in mine["encoding"]["groups"] if g["name"] == "shim" for f in g["frames"]] == [
        REENCODE_LEVEL
    ]
    ran = start(app, root)
    assert ran.returncode == 0 and "RAN 1.0.2" in ran.stdout, ran.stderr


def test_a_delta_over_the_memory_bound_is_not_fetched_and_the_group_comes_whole(tmp_path, built, registry):
    app, root = device(tmp_path, built)
    mark = len(registry.served())
    done = start(app, root, "--bundle-update", f"{registry.host}/edge/deltas:1.0.1", "--bundle-delta-memory", "1M")
    assert done.returncode == 0, done.stderr
    assert "delta for group 'shim' not used: it needs" in done.stderr and "fetching the group whole" in done.stderr
    assert "as deltas" not in done.stdout
    assert registry.blob_bytes_served(mark) >= shim_frame_size(built["new"])
    assert sha256_of(app) == sha256_of(built["new"])


def _get_json(registry, path):
    import json
    import urllib.request

    accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
    request = urllib.request.Request(registry.url + path, headers={"Accept": accept})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def patch_digest(registry):
    """The patch's blob, found by hand the way the OCI 1.1 tag fallback says: the new manifest's digest, its
    `sha256-<hex>` tag, the delta manifest it lists, its layer."""
    subject = _get_json(registry, "/v2/edge/deltas/manifests/1.0.1")["manifests"][0]["digest"]
    listed = _get_json(registry, "/v2/edge/deltas/manifests/" + subject.replace(":", "-"))["manifests"]
    # Beside the delta, the bundle's SBOM and provenance that push attached (tests/e2e/test_fleet_referrers.py).
    kinds = ["application/spdx+json", "application/vnd.bundler.delta.v1", "application/vnd.dsse.envelope.v1+json"]
    assert sorted(e["artifactType"] for e in listed) == kinds
    (delta,) = [e for e in listed if e["artifactType"] == "application/vnd.bundler.delta.v1"]
    layers = _get_json(registry, "/v2/edge/deltas/manifests/" + delta["digest"])["layers"]
    assert [layer["annotations"]["vnd.bundler.delta.group"] for layer in layers] == ["shim"]
    return layers[0]["digest"]


def test_a_corrupted_patch_falls_back_to_the_whole_group(tmp_path, built, registry):
    """The registry's stored copy of the patch is damaged (a disk fault a real registry cannot be made to have
    on demand otherwise): the device's digest check refuses it and the shim's frame comes whole."""
    app, root = device(tmp_path, built)
    stored = registry.blob_data_path(patch_digest(registry))
    saved = stored.read_bytes()
    damaged = bytearray(saved)
    damaged[len(damaged) // 2] ^= 0xFF
    try:
        stored.write_bytes(bytes(damaged))
        mark = len(registry.served())
        done = start(app, root, "--bundle-update", f"{registry.host}/edge/deltas:1.0.1")
    finally:
        stored.write_bytes(saved)
    assert done.returncode == 0, done.stderr
    assert "delta for group 'shim' not used" in done.stderr and "fetching the group whole" in done.stderr
    assert "as deltas" not in done.stdout
    assert registry.blob_bytes_served(mark) >= shim_frame_size(built["new"])
    assert sha256_of(app) == sha256_of(built["new"])
    ran = start(app, root)
    assert ran.returncode == 0 and "RAN 1.0.1" in ran.stdout, ran.stderr


def test_a_frame_of_a_group_of_several_comes_as_a_delta(tmp_path, cache_dir, stub_path):
    """A changed frame of a group of several: the device encodes that frame again and moves the frames after it;
    the file is the same bundle."""
    bundles = {}
    for label, release, version in (("old", containerd.OLD, "1.0.0"), ("new", containerd.NEW, "1.0.1")):
        shim = containerd.release(release).path(containerd.SHIM)
        files = [
            ("bin/containerd-shim-runc-v2", str(shim), "tools"),
            ("bin/containerd-shim", "/usr/bin/containerd-shim", "tools"),
        ]
        project = write_project(tmp_path / label, files, version=version, name="deltas")
        bundles[label] = build(project, cache_dir, "--stub", stub_path, "--frame-size", "1M")
    import json

    index = json.loads(bundler("inspect", bundles["new"], "--json").stdout)
    assert [len(g["frames"]) for g in index["encoding"]["groups"] if g["name"] == "tools"] == [2]  # the test's premise
    with Registry(tmp_path / "storage") as registry:
        bundler("push", bundles["old"], f"{registry.host}/edge/deltas:1.0.0")
        pushed = bundler(
            "push",
            bundles["new"],
            f"{registry.host}/edge/deltas:1.0.1",
            "--delta-from",
            bundles["old"],
            "--delta-level",  # no longer needed: said so, and ignored
            "19",
        )
        assert "--delta-level is no longer needed" in pushed.stderr, pushed.stderr
        assert "1 patch(es)" in pushed.stderr, pushed.stderr
        app, root = device(tmp_path, bundles)
        done = start(app, root, "--bundle-update", f"{registry.host}/edge/deltas:1.0.1")
    assert done.returncode == 0 and "as deltas: tools" in done.stdout, done.stdout + done.stderr
    mine = inspect(app)
    assert mine["bundle_id"] == index["bundle_id"] and sha256_of(app) != sha256_of(bundles["new"])
    levels = [f.get("level") for g in mine["encoding"]["groups"] if g["name"] == "tools" for f in g["frames"]]
    assert sorted(levels, key=str) == [REENCODE_LEVEL, None], (
        levels
    )  # the shim's frame encoded here, the other one kept
    ran = start(app, root)
    assert ran.returncode == 0 and "RAN 1.0.1" in ran.stdout, ran.stderr

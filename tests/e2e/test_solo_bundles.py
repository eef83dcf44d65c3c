"""The proof: a real container runtime shipped as one file. The solo bundle (containerd, its shim, runc, crun,
CNI plugins, two images) is built against a real registry, copied to a fresh directory, and run with the
registry stopped; its bundled containerd and runc run a container from an embedded image."""

import json
import os
import shutil
import subprocess
import uuid

import pytest

from testing.helpers import bundler
from testing.images import build_solo_images
from testing.registry import Registry
from testing.solo import RUN_TIMEOUT, Solo, write_solo_manifest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containerd and runc need root")


@pytest.fixture(scope="module")
def solo_images(tmp_path_factory):
    return build_solo_images(tmp_path_factory.mktemp("solo-images"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory, solo_images):
    reg = Registry(tmp_path_factory.mktemp("solo-registry")).start()
    solo_images.push(reg)
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory, registry):
    directory = tmp_path_factory.mktemp("solo-bundles")
    write_solo_manifest(directory, registry.host)
    return directory


def make(project, cache_dir, stub_path, variant, name=None, *extra):
    out = project / "dist" / (name or variant)
    bundler(
        "make",
        "--variant",
        variant,
        "--cache-dir",
        cache_dir,
        "--stub",
        stub_path,
        "--level",
        "3",
        "-o",
        out,
        *extra,
        cwd=project,
    )
    return out


@pytest.fixture(scope="module")
def offline(project, cache_dir, stub_path):
    return make(project, cache_dir, stub_path, "offline")


@pytest.fixture(scope="module")
def online(project, cache_dir, stub_path):
    return make(project, cache_dir, stub_path, "online")


class Device:
    """A fresh directory with a copy of the bundle, as if carried there on a USB stick."""

    def __init__(self, directory, bundle):
        self.dir = directory
        self.exe = directory / bundle.name
        shutil.copy2(bundle, self.exe)
        self.root = directory / "root"
        self.cleanup = Solo(self.root / "current", self.root / "current" / "images", self.root / "data")

    def run(self, *args, exe=None):
        return subprocess.run(
            [str(exe or self.exe), "--bundle-dir", str(self.root), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def device(tmp_path):
    made = []

    def on(bundle):
        directory = tmp_path / f"device{len(made)}"
        directory.mkdir()
        made.append(Device(directory, bundle))
        return made[-1]

    yield on
    for d in made:
        d.cleanup.kill_leftovers()


def _marker():
    return "marker-" + uuid.uuid4().hex[:12]


def test_offline_bundle_runs_a_container_with_no_registry(offline, registry, device, solo_images):
    registry.stop()
    try:
        dev = device(offline)
        marker = _marker()
        result = dev.run("run", "hello", "echo", marker)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == marker
        world = dev.run("run", "world")
        assert world.returncode == 0 and world.stdout.strip() == solo_images.world.greeting, world.stderr
    finally:
        registry.start()


def test_online_bundle_pulls_at_first_start_then_runs_offline(online, registry, device, solo_images):
    dev = device(online)
    # The runtime starts at once with the embedded image; world arrives in the background, waited for here.
    started = dev.run("run", "hello", "echo", "started")
    assert started.returncode == 0 and started.stdout.strip() == "started", started.stderr
    waited = dev.run("--bundle-wait-images", "world", "--timeout", RUN_TIMEOUT)
    assert waited.returncode == 0 and waited.stdout.strip().endswith("/images/world.tar"), waited.stderr
    first = dev.run("run", "world")
    assert first.returncode == 0 and first.stdout.strip() == solo_images.world.greeting, first.stderr
    info = json.loads(
        subprocess.run([str(dev.exe), "--bundle-info", "--json"], capture_output=True, text=True, check=True).stdout
    )
    world = next(i for i in info["images"] if i["name"] == "world")
    assert not world["embedded"] and world["digest"] == solo_images.world.digest  # pinned, pulled by digest
    registry.stop()
    try:
        marker = _marker()
        second = dev.run("run", "hello", "echo", marker)
        assert second.returncode == 0 and second.stdout.strip() == marker, second.stderr
        third = dev.run("run", "world")
        assert third.returncode == 0 and third.stdout.strip() == solo_images.world.greeting, third.stderr
        assert "pulling" not in second.stderr + third.stderr
    finally:
        registry.start()


def test_upgrade_installs_beside_and_moves_current(project, cache_dir, stub_path, offline, device, tmp_path):
    upgraded_project = tmp_path / "v2"
    upgraded_project.mkdir()
    text = (project / "bundle.toml").read_text().replace('version = "1.0.0"', 'version = "1.1.0"', 1)
    (upgraded_project / "bundle.toml").write_text(text)
    newer = make(upgraded_project, cache_dir, stub_path, "offline", "offline-1.1.0")
    dev = device(offline)
    assert dev.run("run", "hello", "true").returncode == 0
    old_id = os.readlink(dev.root / "current")
    result = dev.run("run", "hello", "true", exe=newer)
    assert result.returncode == 0, result.stderr
    new_id = os.readlink(dev.root / "current")
    assert new_id != old_id and os.readlink(dev.root / "previous") == old_id
    assert (dev.root / old_id / "bin" / "containerd").exists() and (dev.root / new_id / "bin" / "containerd").exists()


def test_online_is_smaller_by_about_the_images_it_leaves_out(offline, online, solo_images):
    offline_size, online_size = offline.stat().st_size, online.stat().st_size
    print(
        f"offline bundle {offline_size} bytes, online bundle {online_size} bytes, difference "
        f"{offline_size - online_size}"
    )
    # world's own layer holds 1 MiB of incompressible data: that is what the online variant leaves out.
    world_only = solo_images.layout.manifest(solo_images.world.layout_tag)["layers"][-1]["size"]
    assert 0.8 * world_only < offline_size - online_size < 1.3 * world_only


def test_images_from_local_archives(tmp_path, cache_dir, stub_path, solo_images, device):
    project = tmp_path / "local"
    project.mkdir()
    write_solo_manifest(project)
    solo_images.hello.write_archive(project / "hello-oci.tar")
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            f"oci:{solo_images.layout.path}:{solo_images.world.layout_tag}",
            f"docker-archive:{project / 'world-docker.tar'}:solo/world:1",
        ],
        check=True,
    )
    text = (project / "bundle.toml").read_text()
    text = text.replace('"127.0.0.1:5000/solo/hello:1"', '"oci-archive:hello-oci.tar"')
    text = text.replace('"127.0.0.1:5000/solo/world:1"', '"docker-archive:world-docker.tar"')
    (project / "bundle.toml").write_text(text)
    # The stub make is given is the one pinned (the session's cache may hold a portable amd64 stub as well).
    bundler("lock", "--arch", "amd64", "--stub", stub_path, "--cache-dir", cache_dir, cwd=project)
    exe = make(project, cache_dir, stub_path, "offline", None, "--locked")
    dev = device(exe)
    marker = _marker()
    result = dev.run("run", "hello", "echo", marker)
    assert result.returncode == 0 and result.stdout.strip() == marker, result.stderr
    world = dev.run("run", "world")
    assert world.returncode == 0 and world.stdout.strip() == solo_images.world.greeting, world.stderr

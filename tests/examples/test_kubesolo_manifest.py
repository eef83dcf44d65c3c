"""examples/kubesolo/bundle.toml, checked with what this machine has (no route to GitHub or the registries):
the manifest loads with the set the issue names, `bundler make --arch arm` stops at once naming crun and arm
(upstream has no 32-bit ARM crun or containerd) until sources for it are given, and `bundler lock` would
fetch exactly the URLs listed here."""

import tomli_w
import tomllib

from bundler.manifest import load_manifest
from payload.arches import NAMES as ARCHS
from payload.oci.reference import parse_reference
from testing.helpers import ROOT, bundler

EXAMPLE = ROOT / "examples" / "kubesolo" / "bundle.toml"
LAUNCHER = ROOT / "examples" / "solo" / "bin" / "solo"

CRUN = "https://github.com/containers/crun/releases/download/1.19/crun-1.19-linux-%s"
CONTAINERD = "https://github.com/containerd/containerd/releases/download/v2.0.0/containerd-2.0.0-linux-%s.tar.gz"
CNI = "https://github.com/containernetworking/plugins/releases/download/v1.6.0/cni-plugins-linux-%s-v1.6.0.tgz"
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
LOCKED_ARCHES = ["amd64", "arm64", "riscv64"]  # every file has an upstream source for these
IMAGES = {
    "coredns": "registry.k8s.io/coredns/coredns:v1.11.3",
    "pause": "registry.k8s.io/pause:3.10",
    "portainer-agent": "docker.io/portainer/agent:2.24.1",
    "local-path-provisioner": "docker.io/rancher/local-path-provisioner:v0.0.30",
}


def test_manifest_loads_with_the_runtime_set_and_the_images_split_by_variant():
    manifest = load_manifest(EXAMPLE)
    assert {spec.path for spec in manifest.files} == {
        "bin/solo",
        "bin/crun",
        "bin/containerd-shim-runc-v2",
        "bin/containerd",
        "bin/ctr",
        *("cni/bin/" + plugin for plugin in CNI_PLUGINS),
    }
    assert manifest.entrypoint == ["bin/solo"] and manifest.file("bin/solo").mode == 0o755
    assert {image.name: parse_reference(image.ref).fully_qualified() for image in manifest.images} == IMAGES
    assert sorted(manifest.variant("online").embed) == ["coredns", "pause"]
    assert manifest.variant("offline").embed == tuple(IMAGES)
    for spec in manifest.files:
        for source in spec.sources.values():
            assert source.sha256 is None  # pinned by `bundler lock`, not by hand
    assert manifest.source_for("bin/containerd-shim-runc-v2", "arm64").extract == "bin/containerd-shim-runc-v2"


def test_make_for_arm_fails_at_once_naming_crun_and_arm(tmp_path):
    cache = tmp_path / "cache"
    result = bundler("make", "--manifest", EXAMPLE, "--arch", "arm", "--cache-dir", cache, cwd=tmp_path, check=False)
    assert result.returncode == 2, result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "'bin/crun'" in errors[0] and "arch 'arm'" in errors[0] and "[file.source.arm]" in errors[0]
    assert "'cni/bin/bridge'" not in errors[0]  # CNI has an arm build upstream
    # "At once": before anything is downloaded (how fast is measured by scripts/bench.py, not here).
    downloaded = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert downloaded == []


def test_make_for_arm_gets_past_the_check_once_arm_sources_are_given(tmp_path):
    data = tomllib.loads(EXAMPLE.read_text())
    local = {
        "bin/crun": "/usr/bin/crun",
        "bin/containerd-shim-runc-v2": "/usr/bin/containerd-shim-runc-v2",
        "bin/containerd": "/usr/bin/containerd",
        "bin/ctr": "/usr/bin/ctr",
    }
    for spec in data["file"]:
        if "url" in spec["source"]:
            spec["source"]["url"] = str(LAUNCHER)
        elif "arm" not in spec["source"]:
            spec["source"]["arm"] = {"url": local[spec["path"]]}
    (tmp_path / "bundle.toml").write_text(tomli_w.dumps(data))
    result = bundler(
        "make",
        "--arch",
        "arm",
        "--offline",
        "--cache-dir",
        tmp_path / "cache",
        cwd=tmp_path,
        env={"BUNDLER_STUB": ""},
        check=False,
    )
    # The next step is the stub: none for arm in this empty cache, which --offline cannot build: the arch check passed.
    assert result.returncode == 4, result.stderr
    assert "no source for arch" not in result.stderr and "no portable arm stub" in result.stderr


def test_lock_would_fetch_exactly_these_urls():
    manifest = load_manifest(EXAMPLE)
    complete = [arch for arch in ARCHS if all("*" in spec.sources or arch in spec.sources for spec in manifest.files)]
    assert complete == LOCKED_ARCHES
    urls = {manifest.resolve_url(manifest.source_for(spec, arch)) for arch in complete for spec in manifest.files}
    expected = {LAUNCHER.resolve().as_uri()}
    for arch in LOCKED_ARCHES:
        expected |= {CRUN % arch, CONTAINERD % arch, CNI % arch}
    assert urls == expected
    # containerd, ctr and the shim come out of one archive per arch, the four plugins out of another.
    assert len(urls) == 1 + 3 * len(LOCKED_ARCHES)
    assert sorted(manifest.source_for("cni/bin/" + plugin, "arm").url for plugin in CNI_PLUGINS) == [CNI % "arm"] * 4

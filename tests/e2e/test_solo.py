"""The solo example's launcher, end to end on this machine: a bundle built from examples/solo/bundle.toml's
files (containerd, its shim, ctr, runc, crun, CNI plugins and bin/solo from Debian's packages), installed with
--bundle-extract, and bin/solo run on it with image archives made here with umoci and skopeo.

Everything is real: the bundled containerd starts, `ctr images import` imports, runc runs the container.
The registry-backed variants (offline, online) reuse write_solo_manifest() and the fixtures below.
"""

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from testing.helpers import bundler
from testing.images import build_image, build_solo_images
from testing.solo import EXAMPLE_REGISTRY, RUN_TIMEOUT, Lines, Solo, alive, processes, write_solo_manifest

DEBIAN_CTR = "/usr/bin/ctr"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containerd and runc need root")


@pytest.fixture(scope="module")
def solo_files_bundle(tmp_path_factory, cache_dir, stub_path):
    """The solo bundle with the example's files and no images."""
    project = tmp_path_factory.mktemp("solo-project")
    write_solo_manifest(project, with_images=False)
    out = project / "dist" / "solo-files"
    bundler("make", "--cache-dir", cache_dir, "--stub", stub_path, "--level", "3", "-o", out, cwd=project)
    return out


@pytest.fixture(scope="module")
def installed(solo_files_bundle, tmp_path_factory):
    """The bundle installed with --bundle-extract: the directory BUNDLE_ROOT names."""
    root = tmp_path_factory.mktemp("solo-root")
    result = subprocess.run(
        [str(solo_files_bundle), "--bundle-extract", str(root)],
        check=False,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


@pytest.fixture(scope="module")
def solo_images(tmp_path_factory):
    return build_solo_images(tmp_path_factory.mktemp("solo-images"))


@pytest.fixture
def solo(installed, solo_images, tmp_path):
    """A launcher with a fresh data directory and an images directory holding hello.tar and world.tar, named as
    the registry-backed bundle names them; every process it leaves behind is killed at the end."""
    images = tmp_path / "images"
    solo_images.write_archives(images, EXAMPLE_REGISTRY)
    launcher = Solo(installed, images, tmp_path / "data")
    yield launcher
    launcher.kill_leftovers()


def _marker():
    return "solo-marker-" + uuid.uuid4().hex


def _host_has_cgroup_v1():
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[2] == "cgroup" for line in mounts)


def test_run_prints_the_marker_from_inside_a_container(solo):
    marker = _marker()
    # /proc/1 inside is the container's own first process, and its cgroup is the one containerd made for it.
    result = solo.run("run", "hello", "sh", "-c", f"echo {marker}; cat /proc/1/comm; cat /proc/self/cgroup")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == marker
    assert lines[1] == "sh"
    assert any(":/solo/solo-" in line for line in lines[2:]), lines
    assert "importing hello.tar" in result.stderr and "importing world.tar" in result.stderr
    assert solo.containerd_pids() == []  # containerd stopped and its shims gone when solo exits


def test_exit_code_of_the_container_is_solos(solo):
    assert solo.run("run", "hello", "sh", "-c", "exit 7").returncode == 7


def test_image_by_short_name_full_ref_or_last_component_runs_its_default_command(solo, solo_images):
    for name in ("world", f"{EXAMPLE_REGISTRY}/solo/world:1", "solo/world:1", "world:1"):
        result = solo.run("run", name)
        assert result.returncode == 0, (name, result.stderr)
        assert result.stdout.strip() == solo_images.world.greeting
    unknown = solo.run("run", "nothing-like-it", "true")
    assert unknown.returncode == 2
    assert "no image 'nothing-like-it'" in unknown.stderr and "solo/hello:1" in unknown.stderr


def test_archives_are_imported_once_and_again_when_they_change(solo, solo_images, tmp_path):
    first = solo.run("run", "hello")
    assert first.returncode == 0 and first.stdout.strip() == solo_images.hello.greeting
    assert first.stderr.count("importing") == 2
    second = solo.run("run", "hello")
    assert second.returncode == 0 and "importing" not in second.stderr
    # A new mtime with the same bytes (a new bundle version installs the same image again): no import.
    archive = solo.images / "hello.tar"
    os.utime(archive, (time.time() + 60, time.time() + 60))
    touched = solo.run("run", "hello")
    assert touched.returncode == 0 and "importing" not in touched.stderr
    # Another image under the same name: imported again, and it is what runs.
    layout = solo_images.hello.layout
    changed = build_image(
        layout,
        "hello",
        "hello again, changed",
        files={"/etc/changed": Path("/etc/hostname")},
        base=solo_images.hello.layout_tag,
        layout_tag="hello-changed",
    )
    changed.write_archive(archive, solo_images.hello.ref(EXAMPLE_REGISTRY))
    third = solo.run("run", "hello")
    assert third.returncode == 0, third.stderr
    assert third.stderr.count("importing") == 1 and "importing hello.tar" in third.stderr
    assert third.stdout.strip() == "hello again, changed"


def test_up_stays_in_the_foreground_shares_containerd_and_stops_on_sigterm(solo, solo_images):
    up = solo.start("up")
    stderr = Lines(up.stderr)
    try:
        ready = stderr.wait_for("containerd ready", timeout=60)
        assert up.poll() is None
        # Debian's ctr, not solo, sees both images imported into the namespace solo.
        listed = subprocess.run(
            [DEBIAN_CTR, "--address", solo.socket, "--namespace", "solo", "images", "ls", "-q"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert sorted(listed.stdout.split()) == sorted(i.ref(EXAMPLE_REGISTRY) for i in solo_images.all)
        containerd = solo.containerd_pids()
        assert containerd
        marker = _marker()
        joined = solo.run("run", "hello", "echo", marker)
        assert joined.returncode == 0 and joined.stdout.strip() == marker, joined.stderr
        assert "importing" not in joined.stderr
        assert solo.containerd_pids() == containerd  # the run used up's containerd and left it running
        second = solo.run("up")
        assert second.returncode == 4 and f"already running (pid {up.pid})" in second.stderr
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=30) == 0
        assert solo.containerd_pids() == []
        assert not (solo.data / "solo" / "lock").exists()
    finally:
        solo.kill_leftovers()
    if _host_has_cgroup_v1():
        assert "runtime runc" in ready


def test_sigterm_reaches_the_container_and_one_that_ignores_it_is_killed(solo):
    traps = solo.start(
        "run", "hello", "sh", "-c", "trap 'echo got-term; exit 5' TERM; echo started; while :; do sleep 0.1; done"
    )
    stdout = Lines(traps.stdout)
    stdout.wait_for("started", timeout=60)
    traps.send_signal(signal.SIGTERM)
    assert traps.wait(timeout=30) == 5
    stdout.wait_for("got-term", timeout=5)
    assert solo.containerd_pids() == []
    # busybox sleep as the container's PID 1 has no handler, so the kernel drops SIGTERM: killed after the grace.
    ignores = solo.start("run", "hello", "sh", "-c", "echo started; exec sleep 600", env={"SOLO_STOP_TIMEOUT": "1"})
    Lines(ignores.stdout).wait_for("started", timeout=60)
    ignores.send_signal(signal.SIGTERM)
    # A second of grace, then SIGKILL; a stop that hangs (the sleep is 600 s) fails the wait.
    assert ignores.wait(timeout=30) == 128 + signal.SIGKILL
    assert solo.containerd_pids() == []


def test_a_killed_solo_leaves_nothing_the_next_start_cannot_clean(solo):
    sleeper = f"sleep {1000 + os.getpid() % 1000}"
    victim = solo.start("run", "hello", "sh", "-c", f"echo started; exec {sleeper}")
    Lines(victim.stdout).wait_for("started", timeout=60)
    os.killpg(victim.pid, signal.SIGKILL)  # solo and ctr; containerd has a session of its own and survives
    victim.wait(timeout=10)
    orphans = solo.containerd_pids()
    assert orphans and any(sleeper == cmd.strip() for _, cmd in processes())
    marker = _marker()
    result = solo.run("run", "hello", "echo", marker)
    assert result.returncode == 0 and result.stdout.strip() == marker, result.stderr
    assert "left running by a solo that was killed" in result.stderr
    assert not any(sleeper == cmd.strip() for _, cmd in processes())  # the left container was removed
    assert not any(alive(pid) for pid in orphans)


@pytest.mark.skipif(not _host_has_cgroup_v1(), reason="needs a host with cgroup v1 hierarchies")
def test_hybrid_cgroups_run_with_runc(solo):
    assert solo.run("run", "hello", "true").returncode == 0
    state = solo.data / "containerd" / "state"
    assert (state / "runc" / "solo").is_dir()  # runc's own state root, made by runc under --runc-root
    assert not (state / "crun").exists()


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_pure_cgroup2_chooses_crun(solo):
    """In a private mount namespace whose /sys/fs/cgroup is cgroup2 alone (the v1 hierarchies unmounted there
    only), solo picks crun. Whether crun then runs a container depends on the host's controllers."""
    script = (
        'for m in $(awk \'$3 == "cgroup" {print $2}\' /proc/self/mounts); do umount "$m"; done; '
        "if ! [ -f /sys/fs/cgroup/cgroup.controllers ]; then "
        "umount /sys/fs/cgroup/unified 2>/dev/null; umount /sys/fs/cgroup; mount -t cgroup2 none /sys/fs/cgroup; "
        'fi; exec "$0" up'
    )
    up = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(solo.root / "bin" / "solo")],
        env=solo.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    solo.pids.append(up.pid)
    try:
        ready = Lines(up.stderr).wait_for("containerd ready", timeout=60)
        assert "runtime crun" in ready
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=30) == 0
    finally:
        solo.kill_leftovers()


def test_data_directory_on_overlayfs_falls_back_to_native(solo, tmp_path):
    """A data directory on overlayfs (a device running inside a container): containerd's overlayfs plugin loads,
    but read-write overlay mounts on it fail, so solo must choose the native snapshotter."""
    layers = {name: tmp_path / "overlay" / name for name in ("lower", "upper", "work", "merged")}
    for path in layers.values():
        path.mkdir(parents=True)
    options = f"lowerdir={layers['lower']},upperdir={layers['upper']},workdir={layers['work']}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(layers["merged"])], check=True)
    try:
        on_overlay = Solo(solo.root, solo.images, layers["merged"] / "data")
        try:
            marker = _marker()
            result = on_overlay.run("run", "hello", "echo", marker)
            assert result.returncode == 0 and result.stdout.strip() == marker, result.stderr
        finally:
            on_overlay.kill_leftovers()
        snapshots = layers["merged"] / "data" / "containerd" / "root"
        assert any((snapshots / "io.containerd.snapshotter.v1.native" / "snapshots").iterdir())
        overlay_snapshots = snapshots / "io.containerd.snapshotter.v1.overlayfs" / "snapshots"
        assert not overlay_snapshots.exists() or not any(overlay_snapshots.iterdir())
    finally:
        subprocess.run(["umount", "--lazy", str(layers["merged"])], check=False)


def test_archive_as_the_bundle_writes_it_runs_by_its_short_name(solo, solo_images):
    """world.tar replaced by an archive from payload.oci.archive (what an installed bundle holds: the fully
    qualified name in io.containerd.image.name, the tag alone in ref.name)."""
    from payload.oci.archive import write_image_archive
    from payload.oci.reference import parse_reference

    layout = solo_images.layout
    manifest_bytes = layout.blob(solo_images.world.digest)
    manifest = layout.manifest(solo_images.world.digest)
    blobs = {
        layer["digest"]: str(layout.path / "blobs" / "sha256" / layer["digest"].split(":")[1])
        for layer in manifest["layers"]
    }
    ref = "registry.example:5000/solo/world:1"
    write_image_archive(
        str(solo.images / "world.tar"),
        parse_reference(ref),
        manifest_bytes,
        layout.blob(manifest["config"]["digest"]),
        blobs,
    )
    result = solo.run("run", "world")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == solo_images.world.greeting
    listed = solo.run("run", ref, "true")
    assert listed.returncode == 0, listed.stderr

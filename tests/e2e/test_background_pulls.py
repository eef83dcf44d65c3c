"""Online bundles with the real frozen stub and a real registry: the runtime starts at once, registry or not, and
the images left out arrive in the background (docs/images.md). Every wait here ends on an event (a marker, a
state line, a process's exit); SAFETY only bounds a wait that would otherwise hang on a bug."""

import fcntl
import os
import signal
import socket
import subprocess
import time

import pytest

from testing.bundles import images_manifest, images_project
from testing.helpers import bundler, run
from testing.registry import FaultProxy, Registry, push

IMAGES = {"base": "test/busybox:1", "derived": "test/derived:1"}
SAFETY = 180  # seconds: a safety net, never a measurement
# The runtime: it marks that it runs, then waits for the image the bundle left out the way a runtime's own script
# would (the bundle's path and the wait's timeout come as arguments), then lists what it has.
RUNTIME = """#!/bin/sh
echo started > "$BUNDLE_DATA/marker"
"$1" --bundle-wait-images derived --timeout "$2"
code=$?
ls "$BUNDLE_IMAGES"
exit $code
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory, image_layout):
    reg = Registry(tmp_path_factory.mktemp("bg-registry")).start()
    push(image_layout, "base", reg, "test/busybox:1")
    push(image_layout, "derived", reg, "test/derived:1")
    yield reg
    reg.stop()


def _bundle(directory, host, cache_dir, pull=None):
    project = images_project(directory, images_manifest(host, IMAGES, online_embed=["base"], offline=False, pull=pull))
    (project / "list.sh").write_text(RUNTIME)
    out = project / "online"
    bundler("make", "--variant", "online", "--cache-dir", cache_dir, "--level", "3", "-o", out, cwd=project)
    return out


def _until(predicate, what):
    deadline = time.monotonic() + SAFETY
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within the {SAFETY} s safety net")
        time.sleep(0.05)


def _state(root):
    """BUNDLE_IMAGES/.state as docs/images.md specifies it: {name: [state, digest, detail]}."""
    try:
        text = (root / "current" / "images" / ".state").read_text()
    except FileNotFoundError:
        return {}
    return {line.split("\t")[0]: line.split("\t")[1:] for line in text.splitlines() if not line.startswith("#")}


def _failed(root):
    return _state(root).get("derived", [""])[0] == "failed"


def _pullers(root):
    """Process groups of background pullers of `root`, found in /proc (the bootloader and its Python share one)."""
    groups = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                words = f.read().split(b"\0")
            if b"--bundle-pull-worker" in words and str(root).encode() in words:
                groups.add(os.getpgid(int(entry)))
        except OSError:
            continue
    return groups


def _start(exe, root, timeout=SAFETY):
    return subprocess.Popen(
        [str(exe), "--bundle-dir", str(root), str(exe), str(timeout)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def _starts_before_the_image_then_gets_it(exe, root, reason):
    """Start `exe` while its registry does not answer: the runtime runs and waits; the caller brings the registry
    back from the returned callback, then the wait ends with the image. Returns the failure the state recorded."""
    runtime = _start(exe, root)
    try:
        _until((root / "data" / "marker").exists, "the runtime's marker")
        images = root / "current" / "images"
        assert (images / "base.tar").exists() and not (images / "derived.tar").exists()
        _until(lambda: _failed(root), "a failed pull in BUNDLE_IMAGES/.state")
        detail = _state(root)["derived"][2]
        assert reason in detail and "next try in" in detail, detail
        assert runtime.poll() is None  # the runtime still waits for the image
        # A later start neither pulls in the foreground nor launches a second puller.
        again = run([exe, "--bundle-dir", root, "--bundle-wait-images", "derived", "--timeout", "0"])
        assert again.returncode == 6 and "the background pull goes on" in again.stderr, again.stderr
        assert "derived" in again.stderr and reason in again.stderr
        assert len(_pullers(root)) == 1
        return runtime, detail
    except BaseException:
        runtime.kill()
        runtime.communicate()
        raise


def _arrives(runtime, root):
    out, err = runtime.communicate(timeout=SAFETY)
    assert runtime.returncode == 0, err
    assert str((root / "current").resolve() / "images" / "derived.tar") in out.split()  # by --bundle-wait-images
    assert "derived.tar" in out.split()  # listed by the runtime afterwards
    assert _state(root)["derived"][0] == "ready" and _state(root)["base"][0] == "ready"
    _until(lambda: not _pullers(root), "the puller's exit once everything is there")
    assert not (root / ".pulls").exists()


def test_registry_stopped_at_first_start(registry, cache_dir, tmp_path):
    exe = _bundle(tmp_path / "project", registry.host, cache_dir)
    root = tmp_path / "root"
    registry.stop()
    try:
        runtime, detail = _starts_before_the_image_then_gets_it(exe, root, registry.host)
        assert "connection refused" in detail and "--bundle-no-pull" not in detail
    finally:
        registry.start()
    _arrives(runtime, root)


def test_registry_that_accepts_and_never_answers(registry, cache_dir, tmp_path):
    exe = _bundle(tmp_path / "project", registry.host, cache_dir)
    root = tmp_path / "root"
    registry.stop()
    hole = socket.socket()
    hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hole.bind(("127.0.0.1", registry.port))
    hole.listen(64)  # the kernel completes connections; nobody reads or answers them
    try:
        runtime, detail = _starts_before_the_image_then_gets_it(exe, root, registry.host)
        assert "(read timeout)" in detail
    finally:
        hole.close()
        registry.start()
    _arrives(runtime, root)


def test_make_against_a_registry_that_never_answers_names_the_timeout_and_host(tmp_path):
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    host = f"127.0.0.1:{hole.getsockname()[1]}"
    try:
        project = images_project(tmp_path / "project", images_manifest(host, IMAGES, online_embed=["base"]))
        made = bundler("make", "--variant", "online", "--cache-dir", tmp_path / "cache", cwd=project, check=False)
    finally:
        hole.close()
    assert made.returncode == 5, made.stderr
    assert host in made.stderr and "(read timeout)" in made.stderr and "Traceback" not in made.stderr


def test_a_restart_during_a_background_pull_resumes_it_with_range(registry, cache_dir, image_layout, tmp_path):
    proxy = FaultProxy(registry.port).start()
    try:
        exe = _bundle(tmp_path / "project", proxy.host, cache_dir)
        layers = image_layout.manifest("derived")["layers"]
        layer = max(layers, key=lambda item: item["size"])
        digest, size = layer["digest"], layer["size"]
        # The first GET of the layer breaks half-way, and the next ones fail until the fault is lifted: the
        # puller keeps the half in .pulls and waits to try again.
        proxy.cut_blob(digest, after=size // 2, times=1)
        proxy.refuse_blob(digest, 503)
        root = tmp_path / "root"
        first = run([exe, "--bundle-dir", root, exe, "0"])
        assert first.returncode == 6 and "derived" in first.stderr, first.stderr  # the wait's own timeout
        _until(lambda: _failed(root), "a failed pull in BUNDLE_IMAGES/.state")
        partial = root / ".pulls" / (digest.split(":")[1] + ".partial")
        assert partial.stat().st_size == size // 2
        # A power cut: the puller dies at once, its partial blob stays.
        pid = int((root / ".pull.lock").read_text())
        os.killpg(os.getpgid(pid), signal.SIGKILL)
        _until(lambda: _lock_free(root / ".pull.lock"), "the puller's end")
        proxy.refuse_blob(digest, None)
        since = len(registry.served())
        second = _start(exe, root)
        _arrives(second, root)
        gets = [r for r in registry.served(since) if r["method"] == "GET" and digest in r["uri"]]
        assert [r["status"] for r in gets] == ["206"], gets
        assert gets[0]["written"] == size - size // 2
    finally:
        proxy.stop()


def _lock_free(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def test_before_start_pulls_first_and_fails_naming_no_pull(registry, cache_dir, tmp_path):
    exe = _bundle(tmp_path / "project", registry.host, cache_dir, pull="before-start")
    registry.stop()
    try:
        root = tmp_path / "root"
        failed = run([exe, "--bundle-dir", root, exe, "0"])
        assert failed.returncode == 5, failed.stderr
        assert "--bundle-no-pull" in failed.stderr and registry.host in failed.stderr
        assert not (root / "data" / "marker").exists()  # the runtime never ran
        assert not _pullers(root) and not (root / ".pull.log").exists()
    finally:
        registry.start()
    pulled = run([exe, "--bundle-dir", root, exe, "0"])
    assert pulled.returncode == 0, pulled.stderr
    assert "pulling" in pulled.stderr and "derived.tar" in pulled.stdout.split()

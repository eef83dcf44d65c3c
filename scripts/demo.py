"""The newcomer's path: build the solo example (containerd, runc, crun, CNI plugins and two images) as one
offline executable, then run a container from it with no registry in reach.

The two images are built here with umoci from busybox-static and pushed to a registry on loopback, since this
machine reaches no public registry; the registry is stopped before the bundle runs.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testing.images import build_solo_images  # noqa: E402
from testing.registry import Registry  # noqa: E402
from testing.solo import write_solo_manifest  # noqa: E402


def step(text):
    print("\n==> " + text, flush=True)


def main():
    if os.geteuid() != 0:
        sys.exit("demo: containerd and runc need root; run it as root (sudo scripts/demo)")
    work = Path(tempfile.mkdtemp(prefix="bundler-demo-"))
    step("building two small images with umoci from busybox-static (no network)")
    images = build_solo_images(work / "images")
    registry = Registry(work / "registry").start()
    try:
        step(f"pushing them to a registry on {registry.host}")
        images.push(registry)
        project = ROOT / "dist" / "demo"
        project.mkdir(parents=True, exist_ok=True)
        write_solo_manifest(project, registry.host)
        step("bundler make --variant offline  (containerd, its shim, ctr, runc, crun, CNI plugins, 2 images)")
        bundler = [sys.executable, "-m", "bundler"]
        exe = ROOT / "dist" / (f"solo-1.0.0-offline-{_arch()}")
        subprocess.run(bundler + ["make", "--variant", "offline", "-o", str(exe)], cwd=project, check=True)
    finally:
        registry.stop()
    subprocess.run(bundler + ["inspect", str(exe)], check=True)
    step("registry stopped; copying the bundle to a fresh 'device' directory and running a container from it")
    device = work / "device"
    device.mkdir()
    subprocess.run(["cp", str(exe), str(device / "solo")], check=True)
    command = [
        str(device / "solo"),
        "--bundle-dir",
        str(device / "root"),
        "run",
        "hello",
        "echo",
        "hello from inside a container, started by the bundled containerd and runc",
    ]
    print("$ " + " ".join(command), flush=True)
    result = subprocess.run(command)
    step(f"done: the bundle is {exe} ({exe.stat().st_size / 1e6:.1f} MB); its install is under {device}")
    sys.exit(result.returncode)


def _arch():
    from bundler.arch import host_arch

    return host_arch()


if __name__ == "__main__":
    main()

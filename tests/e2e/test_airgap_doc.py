"""docs/airgap.md, run: every ```sh block of the page, in order, in one bash (set -e), against a real FAT32
file system (mkfs.vfat image mounted by fusefat) as the stick, with a small project of real binaries, so that
the page cannot go stale. The test does only what a person does between the blocks: it puts release.pub on
the "device" after it is made, and plugs the stick in again (mounts the image) after a block unmounts it."""

import os
import re
import select
import shutil
import subprocess
import sys
import time

import pytest

from testing.fat32 import daemons_of, fat32, fsck, mount_image, unmount
from testing.faults import expected_files, install_problems, version_dirs, write_project
from testing.helpers import ROOT

DOC = ROOT / "docs" / "airgap.md"
ENTRY = """#!/bin/sh
echo "demo $BUNDLE_VERSION serving: $*"
"""
FILES = [
    ("bin/crun", "/usr/bin/crun", "tools"),
    ("bin/containerd-shim-runc-v2", "/usr/bin/containerd-shim-runc-v2", "tools"),
]
SENTINEL = "__airgap_block_done__"


def blocks():
    return re.findall(r"^```sh\n(.*?)^```$", DOC.read_text(), re.S | re.M)


class Shell:
    """One bash that runs block after block, keeping variables and the working directory between them."""

    def __init__(self, cwd, env):
        self.proc = subprocess.Popen(
            ["bash", "--norc", "--noprofile"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.transcript = ""
        self.proc.stdin.write("set -e -o pipefail\n")

    def run(self, block, timeout=600):
        self.proc.stdin.write(block + "\necho " + SENTINEL + "\n")
        self.proc.stdin.flush()
        # Read the pipe's fd itself: a buffered readline() can take the sentinel's line into its buffer with the
        # line before it, and select() then waits on an empty pipe for a line that has already come.
        fd = self.proc.stdout.fileno()
        output, pending, deadline = "", "", time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([fd], [], [], max(0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"block did not finish in {timeout} s:\n{block}\n--- output:\n{output}{pending}")
            data = os.read(fd, 65536)
            if not data:
                raise AssertionError(
                    f"block failed (exit {self.proc.wait()}):\n{block}\n--- output:\n{output}{pending}"
                )
            *lines, pending = (pending + data.decode(errors="replace")).split("\n")
            for line in lines:
                if line.strip() == SENTINEL:
                    self.transcript += output
                    return output
                output += line + "\n"

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.mark.skipif(os.geteuid() != 0, reason="the page unmounts the stick with umount, which needs root for FUSE")
def test_every_command_of_docs_airgap_runs(tmp_path, cache_dir, stub_path):
    found = blocks()
    assert len(found) >= 10, "docs/airgap.md lost its command blocks"
    project = write_project(tmp_path / "project", FILES, name="demo", entry=ENTRY)
    home, device = tmp_path / "home", tmp_path / "device"
    home.mkdir()
    device.mkdir()
    with fat32(tmp_path, size_mb=200) as (stick, image):
        env = dict(
            os.environ,
            PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
            PYTHONPATH=str(ROOT),
            HOME=str(home),
            BUNDLE_DIR=str(tmp_path / "root"),
            STICK=stick,
            PUB=str(device / "release.pub"),
            BUNDLER_CACHE_DIR=str(cache_dir),
        )
        env.pop("XDG_DATA_HOME", None)
        shell = Shell(project, env)
        try:
            for block in found:
                daemons = daemons_of(stick)
                shell.run(block)
                if (project / "release.pub").exists() and not (device / "release.pub").exists():
                    shutil.copy(project / "release.pub", device / "release.pub")  # by hand, once
                if 'umount "$STICK"' in block:
                    unmount(stick, daemons)  # the block unmounted it: wait until fusefat has written everything
                    ok, report = fsck(image)
                    assert ok, report
                    mount_image(image, stick)  # the stick plugged in again
        finally:
            shell.close()
        transcript = shell.transcript
        listed = sorted(os.listdir(stick))
    # What the page promises, in the order it promises it.
    promised = [
        "demo-1.0.0.part001: OK",
        "signature: ok",
        "demo 1.0.0 serving:",
        "serve --port 8080",
        "demo-1.1.0.part001: OK",
        "demo 1.1.0 serving:",
        "demo 1.0.0 serving:",
        "removed 0 version(s)",
    ]
    position = 0
    for text in promised:
        position = transcript.find(text, position)
        assert position >= 0, f"{text!r} missing (in order) from the transcript:\n{transcript}"
    assert listed == [
        "demo-1.1.0",
        "demo-1.1.0.intoto.json",
        "demo-1.1.0.part001",
        "demo-1.1.0.sha256",
        "demo-1.1.0.spdx.json",
    ], listed
    root = tmp_path / "root"
    assert len(version_dirs(root)) == 2
    expected = expected_files(project, FILES)
    assert install_problems(root, expected) == []
    assert os.readlink(root / "current") != os.readlink(root / "previous")

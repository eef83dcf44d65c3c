"""`bundler copy` onto a real FAT32 file system (mkfs.vfat image mounted by fusefat): split on the way, checked
with coreutils' sha256sum and dosfstools' fsck.vfat, installed and run from the stick, the SBOM and provenance
carried beside it; damage on the medium refused by name and repaired by the next copy; SIGKILL half way and a
resume; refusals (file too large for FAT32, no space, a side file of another build) before a byte is written."""

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from bundler.media.copy import FAT32_LIMIT, medium_of
from testing.fat32 import fsck, unmount
from testing.faults import (
    build,
    expected_files,
    install_problems,
    leftovers,
    sha256_of,
    start,
    version_dirs,
    write_project,
)
from testing.helpers import ROOT, bundler, flip_byte, run

SIDES = ("bundle.intoto.json", "bundle.spdx.json")  # what make writes beside the bundle (docs/sbom.md)
FILES = [
    ("bin/crun", "/usr/bin/crun", "tools"),
    ("bin/containerd-shim-runc-v2", "/usr/bin/containerd-shim-runc-v2", "tools"),
]


@pytest.fixture(scope="module")
def made(tmp_path_factory, cache_dir, stub_path):
    project = write_project(tmp_path_factory.mktemp("copy") / "project", FILES)
    exe = build(project, cache_dir)
    return {"exe": exe, "expected": expected_files(project, FILES)}


def sha256sum_c(directory, name):
    return subprocess.run(
        ["sha256sum", "-c", name + ".sha256"],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def on_stick(mount):
    return sorted(os.listdir(mount))


def test_fusefat_is_seen_as_fat32_with_its_limit(fat32_stick):
    mount, _ = fat32_stick
    medium = medium_of(mount / "sub" / "dir")
    assert (medium.mount_point, medium.fstype, medium.file_limit) == (str(mount), "fuse.fusefat", FAT32_LIMIT)
    assert medium_of(ROOT).file_limit is None


def test_mountinfo_escapes_and_the_deepest_mount_win(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "40 22 8:17 / /media/my\\040stick rw,nosuid - vfat /dev/sdb1 rw\n"
        "41 40 8:33 / /media/my\\040stick/inner rw - exfat /dev/sdc1 rw\n"
    )
    assert medium_of("/media/my stick/a", str(info)).fstype == "vfat"
    assert medium_of("/media/my stick/inner/a", str(info)).file_limit is None
    assert medium_of("/media/my stickother", str(info)).fstype == "ext4"


def test_split_on_the_way_verifies_installs_and_runs_from_the_stick(made, fat32_stick, tmp_path):
    mount, image = fat32_stick
    (mount / "bundle.cdx.json").write_text("{}")  # an SBOM of an earlier, other build: not this bundle's
    said = bundler("copy", made["exe"], mount, "--split", "1M")
    names = on_stick(mount)
    parts = [n for n in names if n.startswith("bundle.part")]
    assert names == sorted(["bundle", *SIDES, *parts, "bundle.sha256"]) and len(parts) >= 4, names
    assert f"{len(names)} files written and read back" in said.stdout
    for side in SIDES:  # byte for byte what make wrote
        assert sha256_of(mount / side) == sha256_of(made["exe"].with_name(side)), side
    checked = sha256sum_c(mount, "bundle")
    assert checked.returncode == 0 and checked.stdout.count(": OK") == len(names) - 1 - len(SIDES), checked.stdout
    assert all((mount / p).stat().st_size <= 1 << 20 for p in parts)

    root = tmp_path / "root"
    result = start(mount / "bundle", root)  # runs from the stick: FAT32 shows every file as executable
    assert result.returncode == 0 and result.stdout.startswith("RAN 1.0.0"), result.stderr
    assert install_problems(root, made["expected"]) == []

    again = bundler("copy", made["exe"], mount, "--split", "1M")
    assert f"0 files written and read back (0.0 MB), {len(names)} kept" in again.stdout
    unmount(str(mount))
    ok, report = fsck(str(image))
    assert ok, report


def flip_in_image(image, mount, name, offset):
    """Change one byte of `name` on the medium itself (in the image, under fusefat), not through the mount."""
    with open(mount / name, "rb") as f:
        f.seek(offset)
        needle = f.read(4096)
    with open(image, "r+b") as img:
        raw = img.read()
        at = raw.find(needle)
        assert at >= 0 and raw.find(needle, at + 1) < 0
        img.seek(at + 100)
        img.write(bytes([raw[at + 100] ^ 0x01]))
        img.flush()
        os.fsync(img.fileno())


def test_a_byte_changed_on_the_medium_is_named_and_the_next_copy_repairs_it(made, fat32_stick, tmp_path):
    mount, image = fat32_stick
    bundler("copy", made["exe"], mount, "--split", "1M")
    flip_in_image(image, mount, "bundle.part002", 300_000)
    root = tmp_path / "root"
    refused = start(mount / "bundle", root)
    assert refused.returncode == 3, refused.stderr
    assert "part bundle.part002 does not match its sha256" in refused.stderr.splitlines()[-1]
    assert version_dirs(root) == [] and leftovers(root) == []
    assert "bundle.part002: FAILED" in sha256sum_c(mount, "bundle").stdout

    # The read-back reads the medium: the copy sees the changed byte, rewrites that part alone, keeps the rest.
    repaired = bundler("copy", made["exe"], mount, "--split", "1M")
    assert "1 files written and read back" in repaired.stdout, repaired.stdout
    assert sha256sum_c(mount, "bundle").returncode == 0
    (mount / "bundle.part003").unlink()
    missing = start(mount / "bundle", root)
    assert missing.returncode == 3 and "part bundle.part003 is missing" in missing.stderr
    assert "1 files written" in bundler("copy", made["exe"], mount, "--split", "1M").stdout
    ran = start(mount / "bundle", root)
    assert ran.returncode == 0 and install_problems(root, made["expected"]) == [], ran.stderr


def _size(path):
    """Its size, or None once it is gone (a temp name renamed between listing and looking)."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return None


def test_killed_half_way_then_run_again_it_resumes_and_verifies(made, fat32_stick, tmp_path):
    mount, _ = fat32_stick
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    copying = subprocess.Popen(
        [sys.executable, "-m", "bundler", "copy", str(made["exe"]), str(mount), "--split", "256K"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    # Poll the medium until at least two parts are complete and a third is being written, then kill -9.
    while copying.poll() is None:
        names = os.listdir(mount)
        writing = [n for n in names if ".tmp-" in n and (_size(mount / n) or 0) > 0]
        if writing and sum(1 for n in names if n.startswith("bundle.part") and ".tmp-" not in n) >= 2:
            os.killpg(copying.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    copying.wait()
    assert copying.returncode == -signal.SIGKILL, "the copy ended before it could be killed"
    before = {n: (mount / n).read_bytes() for n in os.listdir(mount) if ".tmp-" not in n}
    # Usually a part under its temp name; none when the kill came between a rename and the next part.
    temps = [n for n in os.listdir(mount) if ".tmp-" in n]
    assert "bundle.sha256" not in before and "bundle" not in before  # the parts come first

    resumed = bundler("copy", made["exe"], mount, "--split", "256K")
    assert all(f"removed {n}, left by an interrupted copy" in resumed.stdout for n in temps)
    kept = int(resumed.stdout.split(" kept as they verified")[0].rsplit(" ", 1)[1])
    assert kept >= len(before) >= 2
    assert not [n for n in os.listdir(mount) if ".tmp-" in n]
    assert sha256sum_c(mount, "bundle").returncode == 0
    # Whatever stood complete after the kill was right: it is byte for byte what the finished copy holds.
    assert all((mount / n).read_bytes() == data for n, data in before.items())
    assert run([mount / "bundle", "--bundle-verify"]).returncode == 0


def test_a_file_over_the_fat32_limit_is_refused_at_once_without_split(made, fat32_stick, tmp_path):
    """A real bundle grown past 4 GiB - 1 with a sparse tail (still a bundle: its ELF headers are at the front,
    and the payload checks read only what the headers name), so no 4 GiB is ever written or read."""
    mount, _ = fat32_stick
    big = tmp_path / "big"
    shutil.copy2(made["exe"], big)
    os.truncate(big, FAT32_LIMIT + 1)
    refused = bundler("copy", big, mount, check=False)
    assert refused.returncode == 4, refused.stderr
    assert (
        f"big is {FAT32_LIMIT + 1} bytes" in refused.stderr
        and f"at most {FAT32_LIMIT} bytes" in refused.stderr
        and "--split" in refused.stderr
        and refused.stderr.count("\n") == 1
    )
    assert on_stick(mount) == []
    too_big_parts = bundler("copy", made["exe"], mount, "--split", "5G", check=False)
    assert too_big_parts.returncode == 4 and f"at most {FAT32_LIMIT} bytes" in too_big_parts.stderr
    assert on_stick(mount) == []


def test_no_space_is_exit_4_with_both_numbers_before_writing(made, fat32_stick):
    mount, _ = fat32_stick
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    with open(mount / "filler", "wb") as f:  # leave 2 MiB, far less than the bundle (FAT has no sparse files)
        left, zeros = free - (2 << 20), bytes(1 << 20)
        while left > 0:
            left -= f.write(zeros[:left])
    free_now = int(
        subprocess.run(
            ["df", "-B1", "--output=avail", str(mount)], stdout=subprocess.PIPE, text=True, check=True
        ).stdout.split()[-1]
    )
    refused = bundler("copy", made["exe"], mount, "--split", "1M", check=False)
    assert refused.returncode == 4, refused.stderr
    needed = int(refused.stderr.split("needs ")[1].split(" bytes")[0])
    assert needed > made["exe"].stat().st_size and f"{free_now} bytes" in refused.stderr, refused.stderr
    assert on_stick(mount) == ["filler"]


def test_copy_to_a_plain_directory_keeps_the_run_bit_and_resumes_to_nothing(made, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    bundler("copy", made["exe"], dest)
    assert sorted(os.listdir(dest)) == sorted(["bundle", *SIDES, "bundle.sha256"])
    assert os.access(dest / "bundle", os.X_OK) and sha256sum_c(dest, "bundle").returncode == 0
    assert "0 files written" in bundler("copy", made["exe"], dest).stdout
    result = start(dest / "bundle", tmp_path / "root")
    assert result.returncode == 0 and result.stdout.startswith("RAN 1.0.0"), result.stderr
    # A split bundle copied as it is: its parts come along, each checked against the index on the way.
    bundler("split", dest / "bundle", "--size", "1M")
    bundler("copy", dest / "bundle", tmp_path / "second", check=False)  # not a directory yet: refused
    (tmp_path / "second").mkdir()
    copied = bundler("copy", dest / "bundle", tmp_path / "second")
    assert len(os.listdir(tmp_path / "second")) == len(os.listdir(dest)), copied.stdout
    assert sha256sum_c(tmp_path / "second", "bundle").returncode == 0


def test_a_damaged_source_is_never_carried(made, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy2(made["exe"], src / "bundle")
    shutil.copy2(str(made["exe"]) + ".sha256", src / "bundle.sha256")
    bundler("split", src / "bundle", "--size", "1M")
    dest = tmp_path / "dest"
    dest.mkdir()
    with open(src / "bundle.part002", "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    refused = bundler("copy", src / "bundle", dest, check=False)
    assert refused.returncode == 3 and "part bundle.part002 does not match its sha256" in refused.stderr
    assert os.listdir(dest) == []
    not_a_dir = bundler("copy", src / "bundle", tmp_path / "nowhere", check=False)
    assert not_a_dir.returncode == 2 and "is not a directory" in not_a_dir.stderr


def test_a_terminal_gets_a_progress_bar_and_a_pipe_does_not(made, tmp_path):
    import pty

    dest = tmp_path / "dest"
    dest.mkdir()
    leader, follower = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "bundler", "copy", str(made["exe"]), str(dest)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )
    os.close(follower)
    drawn = b""
    try:
        while True:
            chunk = os.read(leader, 65536)
            if not chunk:
                break
            drawn += chunk
    except OSError:  # EIO: the terminal's other end is closed and all is read
        pass
    os.close(leader)
    assert done.returncode == 0
    assert b"copying to %s" % str(dest).encode() in drawn and b"100%" in drawn
    piped = bundler("copy", made["exe"], tmp_path / "dest")
    assert piped.stderr == ""


def test_a_copy_with_another_part_size_leaves_no_part_of_the_earlier_one(made, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    bundler("copy", made["exe"], dest, "--split", "512K")
    many = len(os.listdir(dest))
    again = bundler("copy", made["exe"], dest, "--split", "2M")
    assert "sha256sum -c bundle.sha256" in again.stdout
    names = sorted(os.listdir(dest))
    parts = [f"bundle.part{n:03d}" for n in range(1, len(names) - len(SIDES) - 1)]
    assert len(names) < many and names == sorted(["bundle", *SIDES, *parts, "bundle.sha256"])
    assert sha256sum_c(dest, "bundle").returncode == 0 and run([dest / "bundle", "--bundle-verify"]).returncode == 0


@pytest.mark.parametrize("damage", ["sbom", "provenance"])
def test_a_side_file_that_is_not_the_bundles_is_refused_before_a_byte_is_written(made, tmp_path, damage):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("bundle", "bundle.sha256", *SIDES):
        shutil.copy2(made["exe"].with_name(name), src / name)
    if damage == "sbom":
        flip_byte(src / "bundle.spdx.json", 100)
    else:  # a provenance of another build: it names another SBOM among its byproducts
        envelope = json.loads((src / "bundle.intoto.json").read_text())
        statement = json.loads(base64.b64decode(envelope["payload"]))
        statement["predicate"]["runDetails"]["byproducts"][0]["digest"]["sha256"] = "0" * 64
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
        (src / "bundle.intoto.json").write_text(json.dumps(envelope))
    name = "bundle.spdx.json" if damage == "sbom" else "bundle.intoto.json"
    dest = tmp_path / "dest"
    dest.mkdir()
    for command in (["copy", src / "bundle", dest], ["copy", src / "bundle", dest, "--split", "1M"]):
        refused = bundler(*command, check=False)
        assert refused.returncode == 3 and f"{src / name} does not belong to" in refused.stderr, refused.stderr
        assert len(refused.stderr.splitlines()) == 1 and os.listdir(dest) == []

"""The real frozen stub on unfit hosts, made with real mounts: a noexec tmpfs, a tmpfs too small, a tmpfs that
fills up in the middle of an extraction (ENOSPC), and install roots others could tamper with (as root)."""

import os
import shutil
import subprocess
import uuid

import pytest

from payload.layout import open_payload
from payload.rules import SBOM_PATHS
from stub.install import SPACE_MARGIN
from testing.faults import (
    SMALL,
    DiskFiller,
    build,
    expected_files,
    install_problems,
    large_files,
    leftovers,
    start,
    version_dirs,
    write_project,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts tmpfs and chowns: needs root")


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size, noexec=False) -> a fresh tmpfs mount point, unmounted at the end."""
    mounted = []

    def mount(size, noexec=False):
        point = tmp_path / ("mnt-" + uuid.uuid4().hex[:8])
        point.mkdir()
        options = "size={},mode=0755{}".format(size, ",noexec" if noexec else "")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], stderr=subprocess.PIPE, text=True
        )
        if done.returncode != 0:
            pytest.skip(reason=f"cannot mount tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)])


@pytest.fixture(scope="module")
def small(tmp_path_factory, cache_dir, stub_path):
    project = write_project(tmp_path_factory.mktemp("small"), SMALL)
    return build(project, cache_dir), expected_files(project, SMALL)


@pytest.fixture(scope="module")
def large(tmp_path_factory, cache_dir, stub_path):
    files = large_files(30)
    project = write_project(tmp_path_factory.mktemp("large"), files)
    return build(project, cache_dir), expected_files(project, files)


def only_locks(root):
    return sorted(os.listdir(root)) in ([], [".lock", ".locks"])


def test_noexec_root_is_refused_before_extraction_naming_the_mount(tmpfs, small):
    point = tmpfs("64m", noexec=True)
    root = point / "demo"
    result = start(small[0], root)
    assert result.returncode == 4, result.stderr
    assert f"is on the noexec mount {point}" in result.stderr and "--bundle-dir" in result.stderr
    assert "RAN" not in result.stdout and only_locks(root) and "Traceback" not in result.stderr
    # Pointing --bundle-dir elsewhere is the way out.
    assert start(small[0], point.parent / "exec-ok").returncode == 0


def test_too_little_space_is_refused_before_extraction_with_the_numbers(tmpfs, small):
    point = tmpfs("4m")
    root = point / "demo"
    result = start(small[0], root)
    assert result.returncode == 4, result.stderr
    free = int(
        subprocess.run(["df", "-B1", "--output=avail", str(point)], stdout=subprocess.PIPE, text=True).stdout.split()[
            -1
        ]
    )
    needed = sum(os.path.getsize(s) for _, s, _ in SMALL) + os.path.getsize(small[0].parent.parent / "run.sh")
    with open(small[0], "rb") as f:  # and the SBOM bundler adds to every bundle
        needed += sum(e.size for e in open_payload(str(small[0]), f).index.files() if e.path in SBOM_PATHS.values())
    assert (
        f"the install needs {(needed + SPACE_MARGIN) / 1e6:.1f} MB ({needed / 1e6:.1f} MB of files and a margin of "
        f"{SPACE_MARGIN / 1e6:.1f} MB kept free for the runtime), {free / 1e6:.1f} MB free" in result.stderr
    )
    assert only_locks(root)


def test_disk_filling_up_during_extraction_cleans_up_and_exits_4(tmpfs, large):
    exe, expected = large
    installed = sum(os.path.getsize(source) for _, source, _ in large_files(30))
    # Room for the free-space check (install + margin); the filler takes all of it once extraction starts.
    point = tmpfs(f"{(installed + SPACE_MARGIN) // (1 << 20) + 8}m")
    root = point / "demo"
    filler = DiskFiller(root, point / "filler")
    result = start(exe, root)
    filled = filler.join()
    assert filled, "the filler never saw the extraction start"
    assert result.returncode == 4, (result.returncode, result.stderr)
    assert "no space left" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # the "installing" line, then the error
    assert leftovers(str(root)) == [] and version_dirs(root) == [] and "RAN" not in result.stdout
    # Space freed: the next start installs, complete and correct.
    os.unlink(point / "filler")
    again = start(exe, root)
    assert again.returncode == 0 and again.stdout.startswith("RAN"), again.stderr
    assert install_problems(root, expected) == []


@pytest.mark.parametrize("unsafe", ["symlink", "world-writable", "group-writable", "owned-by-another-user"])
def test_root_refuses_an_install_root_others_could_tamper_with(tmp_path, small, unsafe):
    root = tmp_path / "root"
    if unsafe == "symlink":
        (tmp_path / "real").mkdir()
        root.symlink_to(tmp_path / "real")
    else:
        root.mkdir()
        os.chmod(root, {"world-writable": 0o777, "group-writable": 0o775}.get(unsafe, 0o755))
        if unsafe == "owned-by-another-user":
            os.chown(root, 1000, 1000)
    result = start(small[0], root)
    assert result.returncode == 4, result.stderr
    assert str(root) in result.stderr and "--bundle-dir" in result.stderr and "RAN" not in result.stdout
    target = tmp_path / "real" if unsafe == "symlink" else root
    assert version_dirs(target) == [] and not (target / "current").exists()
    shutil.rmtree(tmp_path / "real", ignore_errors=True)

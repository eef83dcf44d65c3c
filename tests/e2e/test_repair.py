"""--bundle-repair with the real frozen stub: installed files deleted, edited, replaced or re-moded are found and
restored from the verified payload, under the install lock; a deleted entrypoint gets no noexec hint; a bundle
with an embedded image gets its archive rebuilt and compared too."""

import json
import os
import stat
import subprocess

import pytest

from testing.bundles import images_manifest, images_project
from testing.faults import SMALL, build, expected_files, install_problems, start, write_project
from testing.helpers import bundler, run
from testing.registry import Registry, push


@pytest.fixture(scope="module")
def small(tmp_path_factory, cache_dir, stub_path):
    project = write_project(tmp_path_factory.mktemp("repair"), SMALL)
    return build(project, cache_dir, "--stub", stub_path), expected_files(project, SMALL)


def test_a_deleted_entrypoint_says_repair_not_noexec(small, tmp_path):
    exe, _ = small
    root = tmp_path / "root"
    assert start(exe, root).returncode == 0
    (root / "current" / "bin" / "run").unlink()
    result = start(exe, root)
    assert result.returncode == 3, result.stderr
    assert "missing" in result.stderr and "--bundle-repair" in result.stderr
    assert "noexec" not in result.stderr and "Traceback" not in result.stderr


def test_repair_restores_deleted_edited_replaced_and_remoded_files(small, tmp_path):
    exe, expected = small
    root = tmp_path / "root"
    assert start(exe, root).returncode == 0
    version = root / "current"
    (version / "bin" / "run").unlink()
    with open(version / "bin" / "crun", "ab") as f:
        f.write(b"edited")
    (version / "bin" / "tee").unlink()
    (version / "bin" / "tee").mkdir()  # replaced by something else
    os.chmod(version / "bin" / "flock", 0o700)
    assert len(install_problems(root, expected)) >= 3

    repaired = start(exe, root, "--bundle-repair")
    assert repaired.returncode == 0, repaired.stderr
    line = repaired.stdout.strip()
    assert "repaired 4 of 5 file(s)" in line  # of the 4 files and the SBOM
    for name, why in (
        ("bin/run", "missing"),
        ("bin/crun", "edited"),
        ("bin/tee", "not a regular file"),
        ("bin/flock", "mode 700, not 755"),
    ):
        assert f"{name} ({why})" in line
    assert install_problems(root, expected) == []  # checked against the sources with sha256sum
    assert not [n for n in os.listdir(root) if ".tmp-" in n]
    assert start(exe, root).stdout.startswith("RAN")

    again = start(exe, root, "--bundle-repair")
    assert again.returncode == 0 and "nothing to repair" in again.stdout


def test_repair_of_a_version_not_installed_installs_it(small, tmp_path):
    exe, expected = small
    root = tmp_path / "root"
    result = start(exe, root, "--bundle-repair")
    assert result.returncode == 0 and "installed it" in result.stdout, result.stderr
    assert install_problems(root, expected) == []


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory, image_layout, stub_path, cache_dir):
    reg = Registry(tmp_path_factory.mktemp("hardening-registry")).start()
    try:
        push(image_layout, "base", reg, "test/busybox:1")
        project = images_project(
            tmp_path_factory.mktemp("repair-images"), images_manifest(reg.host, {"base": "test/busybox:1"})
        )
        out = project / "offline"
        bundler("make", "--stub", stub_path, "--variant", "offline", "--cache-dir", cache_dir, "--level", "3",
                "-o", out, cwd=project)  # fmt: skip
    finally:
        reg.stop()
    return out


def _sha256(path):
    return subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]


def test_repair_restores_files_and_an_embedded_image_archive(image_bundle, tmp_path):
    exe = image_bundle
    genuine, root = tmp_path / "genuine", tmp_path / "root"
    assert run([exe, "--bundle-dir", genuine]).stdout.split() == ["base.tar"]
    assert run([exe, "--bundle-dir", root]).returncode == 0
    version = root / "current"
    with open(version / "bin" / "list", "ab") as f:
        f.write(b"echo EVIL\n")
    with open(version / "images" / "base.tar", "r+b") as f:  # a flipped byte in the middle of the archive
        f.seek(os.path.getsize(version / "images" / "base.tar") // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 1]))
    os.chmod(version / "images", 0o777)
    info = json.loads(run([exe, "--bundle-info", "--json"]).stdout)
    assert [i["embedded"] for i in info["images"]] == [True]

    repaired = run([exe, "--bundle-dir", root, "--bundle-repair"])
    assert repaired.returncode == 0, repaired.stderr
    line = repaired.stdout.strip()
    assert "repaired 2 of 3 file(s) and 1 directory" in line, line  # of 2 files and the SBOM
    for what in ("bin/list (edited)", "images/base.tar (edited)", "images/ (mode 777, not 755)"):
        assert what in line, line
    for name in ("bin/list", "images/base.tar"):
        assert _sha256(version / name) == _sha256(genuine / "current" / name), name
    assert stat.S_IMODE(os.stat(version / "images").st_mode) == 0o755
    assert not [n for n in os.listdir(root) if ".tmp-" in n]
    assert run([exe, "--bundle-dir", root]).stdout.split() == ["base.tar"]

    (version / "images" / "base.tar").unlink()
    again = run([exe, "--bundle-dir", root, "--bundle-repair"])
    assert again.returncode == 0 and "images/base.tar (missing)" in again.stdout, again.stderr
    assert _sha256(version / "images" / "base.tar") == _sha256(genuine / "current" / "images" / "base.tar")
    clean = run([exe, "--bundle-dir", root, "--bundle-repair"])
    assert clean.returncode == 0 and "nothing to repair" in clean.stdout, clean.stderr

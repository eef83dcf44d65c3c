"""--bundle-repair with the real frozen stub: installed files deleted, edited, replaced or re-moded are found and
restored from the verified payload, under the install lock; a deleted entrypoint gets no noexec hint."""

import os

import pytest

from testing.faults import SMALL, build, expected_files, install_problems, start, write_project


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
    assert "repaired 4 of 4 file(s)" in line
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

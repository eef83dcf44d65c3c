"""Versions share storage, with the real frozen stub and a realistic bundle (real binaries in two groups, a
launcher script, an embedded image): two installed versions that differ in the launcher hold their common files
and the image archive once (same inode), gc of one leaves the other whole, and a repair of one never changes the
other's file through the shared inode."""

import os
import shutil

import pytest

from payload.rules import SBOM_PATHS
from testing.bundles import LIST_IMAGES, images_manifest, images_project
from testing.faults import ENTRY, SMALL, build, expected_files, install_problems, start, write_project
from testing.helpers import flip_byte
from testing.images import build_solo_images
from testing.registry import Registry, push
from tests.conftest import require_registry_tools

IMAGE = '\n[[image]]\nname = "hello"\nref = "oci-archive:hello.tar"\n'


@pytest.fixture(scope="module")
def versions(tmp_path_factory, cache_dir, stub_path):
    """{version: (executable, expected files)}: 1.0.0 and 1.0.1 differ in their launcher script only."""
    require_registry_tools()
    images = build_solo_images(tmp_path_factory.mktemp("shared-images"))
    built = {}
    for version, entry in (("1.0.0", ENTRY), ("1.0.1", ENTRY + "# 1.0.1\n")):
        project = write_project(tmp_path_factory.mktemp("shared-" + version), SMALL, version=version, entry=entry)
        images.hello.write_archive(project / "hello.tar")
        with open(project / "bundle.toml", "a") as f:
            f.write(IMAGE)
        built[version] = (build(project, cache_dir, "--stub", stub_path), expected_files(project, SMALL))
    return built


def _install_both(versions, root):
    ids = {}
    for version in ("1.0.0", "1.0.1"):
        result = start(versions[version][0], root)
        assert result.returncode == 0 and result.stdout.startswith("RAN " + version), result.stderr
        ids[version] = result.stdout.split()[2]
    return root / ids["1.0.0"], root / ids["1.0.1"]


def _stat(path):
    st = os.stat(path)
    return st.st_ino, st.st_mode, st.st_size


COMMON = [path for path, _, _ in SMALL] + ["images/hello.tar"]


def test_two_versions_hold_their_common_files_and_image_once(versions, tmp_path):
    old, new = _install_both(versions, tmp_path / "root")
    for path in COMMON:
        assert os.stat(old / path).st_ino == os.stat(new / path).st_ino, path
        assert os.stat(new / path).st_nlink == 2, path
    assert os.stat(old / "bin/run").st_ino != os.stat(new / "bin/run").st_ino  # the launcher that differs
    # Every file of the new version is still what its sources are (sha256sum, not our code).
    assert install_problems_without_images(tmp_path / "root", versions["1.0.1"][1]) == []


def install_problems_without_images(root, expected):
    """install_problems of `current`, the image archive left aside (it is checked by inode and by skopeo)."""
    return [p for p in install_problems(root, expected) if "installed files" not in p] + _extra(root, expected)


def _extra(root, expected):
    found = set()
    for dirpath, _, names in os.walk(root / "current"):
        found.update(os.path.relpath(os.path.join(dirpath, n), root / "current") for n in names)
    extra = found - set(expected) - {".bundle-installed", ".bundle-index.json", ".bundle-start", "images/hello.tar"}
    extra -= {"images/.state"}
    extra -= set(SBOM_PATHS.values())  # checked by install_problems
    return [f"unexpected {sorted(extra)}"] if extra else []


def test_gc_of_one_version_keeps_the_shared_inodes_for_the_other(versions, tmp_path):
    root = tmp_path / "root"
    old, new = _install_both(versions, root)
    before = {path: _stat(new / path) for path in COMMON}
    os.unlink(root / "previous")  # so that gc may remove the old version
    collected = start(versions["1.0.1"][0], root, "--bundle-gc")
    assert collected.returncode == 0 and "removed 1 version" in collected.stdout, collected.stderr
    assert not old.exists()
    for path in COMMON:
        assert _stat(new / path) == before[path] and os.stat(new / path).st_nlink == 1, path
    assert install_problems_without_images(root, versions["1.0.1"][1]) == []
    assert start(versions["1.0.1"][0], root).stdout.startswith("RAN 1.0.1")
    repaired = start(versions["1.0.1"][0], root, "--bundle-repair")  # the image archive is whole, too
    assert repaired.returncode == 0 and "nothing to repair" in repaired.stdout, repaired.stderr


def test_repair_of_one_version_does_not_change_the_other(versions, tmp_path):
    root = tmp_path / "root"
    old, new = _install_both(versions, root)
    # Damage through the old version's names, which the new version shares: one file edited in place, one
    # re-moded, the image archive cut.
    flip_byte(old / "bin/crun", 0)
    os.chmod(old / "bin/flock", 0o700)
    with open(old / "images/hello.tar", "r+b") as f:
        f.truncate(os.path.getsize(old / "images/hello.tar") // 2)
    damaged = {path: (_stat(old / path), (old / path).read_bytes()) for path in COMMON}

    repaired = start(versions["1.0.1"][0], root, "--bundle-repair")
    assert repaired.returncode == 0, repaired.stderr
    for name in ("bin/crun (edited)", "bin/flock (mode 700, not 755)", "images/hello.tar (edited)"):
        assert name in repaired.stdout
    assert install_problems_without_images(root, versions["1.0.1"][1]) == []
    # The old version's files are what they were: repair wrote new files and renamed them, never in place.
    for path in COMMON:
        assert (_stat(old / path), (old / path).read_bytes()) == damaged[path], path
    assert os.stat(new / "bin/crun").st_ino != os.stat(old / "bin/crun").st_ino
    assert os.stat(new / "bin/tee").st_ino == os.stat(old / "bin/tee").st_ino  # undamaged: still shared

    # The old version, repaired in turn, is whole again.
    again = start(versions["1.0.0"][0], root, "--bundle-repair")
    assert again.returncode == 0 and "repaired 3 of" in again.stdout, again.stdout + again.stderr


def test_a_damaged_file_of_an_installed_version_is_not_linked_into_a_new_one(versions, tmp_path):
    root = tmp_path / "root"
    first = start(versions["1.0.0"][0], root)
    old = root / first.stdout.split()[2]
    flip_byte(old / "bin/crun", os.path.getsize(old / "bin/crun") - 1)  # same size: found only by comparing bytes
    shutil.copy(old / "images/hello.tar", root / "hello.tar.saved")
    flip_byte(old / "images/hello.tar", os.path.getsize(old / "images/hello.tar") // 2)
    second = start(versions["1.0.1"][0], root)
    assert second.returncode == 0 and second.stdout.startswith("RAN 1.0.1"), second.stderr
    new = root / second.stdout.split()[2]
    assert os.stat(new / "bin/crun").st_ino != os.stat(old / "bin/crun").st_ino
    assert os.stat(new / "images/hello.tar").st_ino != os.stat(old / "images/hello.tar").st_ino
    assert (new / "images/hello.tar").read_bytes() == (root / "hello.tar.saved").read_bytes()
    assert os.stat(new / "bin/tee").st_ino == os.stat(old / "bin/tee").st_ino
    assert install_problems_without_images(root, versions["1.0.1"][1]) == []


@pytest.fixture(scope="module")
def registry(tmp_path_factory, image_layout):
    with Registry(tmp_path_factory.mktemp("shared-registry")) as running:
        push(image_layout, "base", running, "test/busybox:1")
        yield running


def test_a_new_version_links_the_image_an_installed_one_pulled_and_does_not_pull_it(
    registry, cache_dir, stub_path, tmp_path
):
    built = []
    for version in ("1.0.0", "1.0.1"):
        text = images_manifest(registry.host, {"base": "test/busybox:1"}, offline=False, pull="before-start")
        project = images_project(tmp_path / version, text.replace('version = "1.0.0"', f'version = "{version}"'))
        (project / "list.sh").write_text(LIST_IMAGES + f"# {version}\n")
        built.append(
            build(project, cache_dir, "--stub", stub_path, "--variant", "online", "--insecure-registry", registry.host)
        )
    root = tmp_path / "root"
    first = start(built[0], root)
    assert first.returncode == 0 and "pulling" in first.stderr and first.stdout.split() == ["base.tar"], first.stderr
    mark = len(registry.served())
    second = start(built[1], root)
    assert second.returncode == 0 and second.stdout.split() == ["base.tar"], second.stderr
    assert "pulling" not in second.stderr and registry.served(mark) == []  # not one request
    versions = [p for p in root.iterdir() if len(p.name) == 64 and not p.is_symlink()]
    assert len(versions) == 2
    assert len({os.stat(v / "images" / "base.tar").st_ino for v in versions}) == 1

"""One install root, many versions, with the real frozen stub: a root belongs to one bundle name, a start of an
older version than `current` is refused unless allowed, and --bundle-rollback swaps `current` and `previous`."""

import os

import pytest

from testing.faults import SMALL, build, expected_files, install_problems, start, write_project


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, cache_dir, stub_path):
    """hello 1.9.0, 1.10.0 and 2.0.0-rc1 (1.10 is newer than 1.9: numbers compare as numbers), and sigt 1.0.0."""
    built = {}
    for name, version in (("hello", "1.9.0"), ("hello", "1.10.0"), ("hello", "2.0.0-rc1"), ("sigt", "1.0.0")):
        project = write_project(tmp_path_factory.mktemp(name + version), SMALL, version=version, name=name)
        built[name, version] = (build(project, cache_dir, "--stub", stub_path), expected_files(project, SMALL))
    return built


def _bundle_id(result):
    assert result.returncode == 0 and result.stdout.startswith("RAN"), result.stderr
    return result.stdout.split()[2]


def _versions(root):
    return sorted(p.name for p in root.iterdir() if len(p.name) == 64 and not p.is_symlink())


def test_a_root_belongs_to_the_first_bundle_name_installed_there(bundles, tmp_path):
    root = tmp_path / "root"
    hello, _ = bundles["hello", "1.9.0"]
    sigt, _ = bundles["sigt", "1.0.0"]
    hello_id = _bundle_id(start(hello, root))
    assert (root / ".bundle-name").read_text() == "hello\n"
    for args in ([], ["--bundle-gc"], ["--bundle-rollback"]):
        refused = start(sigt, root, *args)
        assert refused.returncode == 4, refused.stderr
        assert "belongs to bundle 'hello'" in refused.stderr and "this is bundle 'sigt'" in refused.stderr
        assert "Traceback" not in refused.stderr and "RAN" not in refused.stdout
    # Nothing of sigt was written, and hello is untouched.
    assert _versions(root) == [hello_id] and os.readlink(root / "current") == hello_id
    # Its own root is fine.
    assert _bundle_id(start(sigt, tmp_path / "sigt"))


def test_an_older_version_needs_allow_downgrade_and_then_becomes_current(bundles, tmp_path):
    root = tmp_path / "root"
    (old, _), (new, _) = bundles["hello", "1.9.0"], bundles["hello", "1.10.0"]
    old_id = _bundle_id(start(old, root))
    new_id = _bundle_id(start(new, root))
    assert os.readlink(root / "current") == new_id
    refused = start(old, root)
    assert refused.returncode == 4 and "RAN" not in refused.stdout
    assert "hello 1.9.0 is older than the current version 1.10.0" in refused.stderr
    assert "--bundle-allow-downgrade" in refused.stderr
    assert os.readlink(root / "current") == new_id
    # After a gc has removed it, the old file would install itself again: still refused, nothing extracted.
    os.unlink(root / "previous")
    assert "removed 1 version" in start(new, root, "--bundle-gc").stdout
    again = start(old, root)
    assert again.returncode == 4 and _versions(root) == [new_id]
    allowed = start(old, root, "--bundle-allow-downgrade")
    assert _bundle_id(allowed) == old_id and "installing" in allowed.stderr
    assert os.readlink(root / "current") == old_id and os.readlink(root / "previous") == new_id
    # A pre-release is older than its release, newer than what came before.
    rc, _ = bundles["hello", "2.0.0-rc1"]
    assert _bundle_id(start(rc, root))
    assert install_problems(root, bundles["hello", "2.0.0-rc1"][1]) == []


def test_rollback_swaps_current_and_previous(bundles, tmp_path):
    root = tmp_path / "root"
    (old, expected_old), (new, expected_new) = bundles["hello", "1.9.0"], bundles["hello", "1.10.0"]
    nothing = start(old, root, "--bundle-rollback")
    assert nothing.returncode == 4 and "nothing is installed" in nothing.stderr
    old_id = _bundle_id(start(old, root))
    single = start(old, root, "--bundle-rollback")
    assert single.returncode == 4 and "no previous version" in single.stderr
    new_id = _bundle_id(start(new, root))
    rolled = start(new, root, "--bundle-rollback")
    assert rolled.returncode == 0, rolled.stderr
    assert "current is now hello 1.9.0" in rolled.stdout and "previous 1.10.0" in rolled.stdout
    assert os.readlink(root / "current") == old_id and os.readlink(root / "previous") == new_id
    assert install_problems(root, expected_old) == []
    assert not [n for n in os.listdir(root) if ".tmp-" in n]
    # The rolled-back version runs from `current` without a downgrade question: it is current.
    assert _bundle_id(start(old, root)) == old_id
    # And back again.
    assert start(old, root, "--bundle-rollback").returncode == 0
    assert os.readlink(root / "current") == new_id and os.readlink(root / "previous") == old_id
    assert install_problems(root, expected_new) == []

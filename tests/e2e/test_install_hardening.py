"""What an install leaves for other users to touch, on the real frozen stub: modes that do not follow the umask,
and an install root whose directories others could swap (refused, as sshd's StrictModes refuses a home)."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from testing.bundles import make_bundle

NOBODY = (65534, 65534)
# The entrypoint says which umask it got: the stub's own, or the one the bundle was started with.
SAYS_UMASK = '#!/bin/sh\necho "umask $(umask)"\n'
FILES = {
    "bin/hello": (SAYS_UMASK, "0755"),
    "bin/private": ("#!/bin/sh\n", "0700"),
    "etc/secret": ("key\n", "0600"),
    "share/doc/deep/readme": ("read me\n", "0644"),
    "share/doc/notes": ("notes\n", "0444"),
}


def _with_umask(mask):
    return lambda: os.umask(mask)


def start(exe, root, *args, umask=0o022, user=None, env=None):
    command = [str(exe), "--bundle-dir", str(root), *map(str, args)]
    if user is not None:
        command = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", *command]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        preexec_fn=_with_umask(umask),
        env=dict(os.environ, **(env or {})),
        timeout=120,
    )


def as_nobody(script, *args):
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script, "sh", *map(str, args)],
        capture_output=True,
        text=True,
    )


@pytest.fixture
def public_dir():
    """A directory every user can enter (the test's own tmp_path lies under a 0700 one), removed afterwards."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="bundler-hardening-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, stub_path):
    exe, index = make_bundle(tmp_path_factory.mktemp("hardening"), stub_path, files=FILES)
    return exe, index


def test_an_install_under_umask_000_gives_0755_dirs_and_the_index_modes(bundle, public_dir):
    exe, index = bundle
    root = public_dir / "root"
    result = start(exe, root, umask=0)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "umask 0000"  # the runtime gets back the umask it was started with

    version = root / index.bundle_id
    dirs = [Path(d) for d, _, _ in os.walk(version)]
    assert {str(d.relative_to(version)) for d in dirs} == {
        ".",
        ".bundle",  # the SBOM's
        "bin",
        "etc",
        "images",
        "share",
        "share/doc",
        "share/doc/deep",
    }
    assert {str(d): oct(mode(d)) for d in dirs} == {str(d): oct(0o755) for d in dirs}
    files = {e.path: e.mode for e in index.files()}
    assert {p: oct(mode(version / p)) for p in files} == {p: oct(m) for p, m in files.items()}
    assert files["etc/secret"] == 0o600 and files["share/doc/notes"] == 0o444
    assert mode(version / ".bundle-index.json") == mode(version / ".bundle-installed") == 0o644
    # What the stub keeps beside the versions does not follow that umask either.
    for name, expected in ((".", 0o755), (".locks", 0o755), ("data", 0o755), (".lock", 0o644), (".bundle-name", 0o644)):
        assert oct(mode(root / name)) == oct(expected), name

    # Another user can neither rewrite the entrypoint nor swap it or its directory.
    genuine = (version / "bin" / "hello").read_bytes()
    assert as_nobody('test -x "$1/bin/hello"', version).returncode == 0  # it can reach the file
    for script in (
        'echo "echo EVIL" > "$1/bin/hello"',
        'mv "$1/bin" "$1/old"',
        'mv "$1/bin/hello" "$1/bin/old"',
        'ln -s /bin/sh "$1/bin/hello2"',
        'mkdir "$1/share/doc/x"',
        'rm -f "$1/.bundle-installed"',
        'mkdir "$2/.locks/x"',
    ):
        tried = as_nobody(script, version, root)
        assert tried.returncode != 0 and "Permission denied" in tried.stderr, script
    assert (version / "bin" / "hello").read_bytes() == genuine
    assert sorted(os.listdir(version / "bin")) == ["hello", "private"]
    assert start(exe, root).stdout.strip() == "umask 0022"


def test_a_stricter_umask_still_gives_the_index_modes(bundle, tmp_path):
    exe, index = bundle
    root = tmp_path / "root"
    assert start(exe, root, umask=0o077).returncode == 0
    version = root / index.bundle_id
    assert mode(version / "share" / "doc" / "deep") == 0o755 and mode(version / "bin" / "hello") == 0o755
    assert mode(version / "share" / "doc" / "deep" / "readme") == 0o644


@pytest.mark.parametrize("where", ["parent", "grandparent", "root"])
def test_a_root_under_a_directory_another_user_owns_is_refused_and_named(bundle, tmp_path, where):
    exe, _ = bundle
    base = tmp_path / "srv"
    root = base / "apps" / "demo"
    root.mkdir(parents=True)
    owned = {"parent": base / "apps", "grandparent": base, "root": root}[where]
    os.chown(owned, *NOBODY)
    result = start(exe, root)
    assert result.returncode == 4, result.stderr
    assert f"{owned} belongs to uid 65534" in result.stderr and "--bundle-dir" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert os.listdir(root) == []


@pytest.mark.parametrize("bits", [0o775, 0o757, 0o777])
def test_a_root_under_a_directory_others_can_write_is_refused_and_named(bundle, tmp_path, bits):
    exe, _ = bundle
    parent = tmp_path / "shared"
    parent.mkdir()
    os.chmod(parent, bits)
    root = parent / "a" / "demo"
    result = start(exe, root)
    assert result.returncode == 4, result.stderr
    assert f"{parent} is writable by other users (mode {bits:o})" in result.stderr
    assert f"chmod go-w {parent}" in result.stderr
    assert os.listdir(parent) == []  # nothing was created under it


def test_a_symlink_in_a_directory_another_user_owns_is_refused(bundle, tmp_path):
    """The resolved path is all root's, but whoever owns the directory that holds the link can repoint it."""
    exe, _ = bundle
    real = tmp_path / "real"
    real.mkdir()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "link").symlink_to(real)
    os.chown(theirs, *NOBODY)
    result = start(exe, theirs / "link" / "demo")
    assert result.returncode == 4, result.stderr
    assert f"{theirs} belongs to uid 65534" in result.stderr
    assert os.listdir(real) == []


def test_a_root_under_a_sticky_directory_like_tmp_installs(bundle, tmp_path):
    """In a sticky directory only an entry's owner may rename or remove it, and the root below it is ours."""
    exe, _ = bundle
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    assert start(exe, sticky / "demo").returncode == 0
    os.chmod(sticky / "demo", 0o1777)  # the root itself may not be: others could make names in it first
    refused = start(exe, sticky / "demo")
    assert refused.returncode == 4 and "is writable by other users (mode 1777)" in refused.stderr


def test_another_user_installs_in_its_own_directories_and_not_under_a_third_users(bundle, public_dir, other_home):
    """A real user without root: its own home is fine (owned by it), a directory of another user is not."""
    exe, _ = bundle
    home = other_home(*NOBODY)
    own = home / "app"
    shutil.copy(exe, own)
    os.chmod(own, 0o755)
    env = {"HOME": str(home), "TMPDIR": str(home)}
    result = start(own, home / "root", user=NOBODY, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "umask 0022"
    third = public_dir / "third"
    third.mkdir()
    os.chown(third, 1, 1)
    refused = start(own, third / "root", user=NOBODY, env=env)
    assert refused.returncode == 4, refused.stderr
    assert f"{third} belongs to uid 1" in refused.stderr and "root or you" in refused.stderr

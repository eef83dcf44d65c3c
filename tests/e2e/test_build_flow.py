"""The build host's flow with real downloads from a real HTTP server: lock, fetch, make --offline (air-gapped),
make --locked, a changed pin refused, groups not recompressed when nothing changed, a release archive member."""

import hashlib
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
import tomllib

from testing.helpers import bundler, run
from testing.http_server import FileServer

MANIFEST = """
[bundle]
name = "flow"
version = "1.0.0"
entrypoint = ["bin/crun", "--version"]
host_libs = ["libsystemd.so.0", "libseccomp.so.2", "libcap.so.2", "libyajl.so.2"]  # crun's, from this host

[[file]]
path = "bin/crun"
mode = "0755"
source = {{ url = "{base}/crun" }}

[[file]]
path = "bin/true"
mode = "0755"
source = {{ url = "{base}/tools.tar.gz", extract = "tools-1.0/true" }}
"""


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def served(tmp_path):
    files = tmp_path / "www"
    files.mkdir()
    (files / "crun").write_bytes(open("/usr/bin/crun", "rb").read())
    with tarfile.open(files / "tools.tar.gz", "w:gz") as tar:
        tar.add("/bin/true", arcname="tools-1.0/true")
    with FileServer(files) as server:
        project = tmp_path / "project"
        project.mkdir()
        (project / "bundle.toml").write_text(MANIFEST.format(base=server.url("").rstrip("/")))
        yield server, project, tmp_path / "cache"


def test_lock_then_locked_make_then_a_wrong_pin_is_refused(served, stub_path):
    server, project, cache = served
    bundler("lock", "--arch", "amd64", "--cache-dir", cache, cwd=project)
    lock = tomllib.loads((project / "bundle.lock").read_text())
    pins = {row["path"]: row["sha256"] for row in lock["file"]}
    assert pins["bin/crun"] == _sha("/usr/bin/crun")
    assert pins["bin/true"] == _sha(server.root / "tools.tar.gz")  # the archive is what is downloaded and pinned

    out = project / "app"
    bundler("make", "--locked", "--stub", stub_path, "--cache-dir", cache, "--level", "3", "-o", out, cwd=project)
    entries = {e["path"]: e for e in json.loads(bundler("inspect", "--json", out).stdout)["entries"]}
    assert entries["bin/true"]["sha256"] == _sha("/bin/true")
    result = run([out, "--bundle-dir", project / "root"])
    crun = subprocess.run(["/usr/bin/crun", "--version"], stdout=subprocess.PIPE, text=True).stdout
    assert result.returncode == 0 and result.stdout == crun

    # The upstream file changes under the same URL: the pin refuses it, with nothing cached under its name.
    (server.root / "crun").write_bytes(b"not crun")
    fresh_cache = project / "fresh-cache"
    failed = bundler(
        "make",
        "--locked",
        "--stub",
        stub_path,
        "--cache-dir",
        fresh_cache,
        "-o",
        project / "bad",
        cwd=project,
        check=False,
    )
    assert failed.returncode == 3 and "sha256" in failed.stderr and "Traceback" not in failed.stderr
    crun_line = MANIFEST.splitlines().index('source = {{ url = "{base}/crun" }}') + 1
    assert f"bundle.toml:{crun_line}: " in failed.stderr  # names the manifest line of the source
    assert not (project / "bad").exists()


def test_locked_make_refuses_what_is_not_pinned(served, stub_path):
    _, project, cache = served
    failed = bundler("make", "--locked", "--stub", stub_path, "--cache-dir", cache, cwd=project, check=False)
    assert failed.returncode == 2 and "not pinned" in failed.stderr and "bundler lock" in failed.stderr


def test_fetch_fills_the_cache_for_an_air_gapped_make(served, stub_path):
    server, project, cache = served
    bundler("lock", "--arch", "amd64", "--cache-dir", cache, cwd=project)
    air_gapped = project / "airgap-cache"
    bundler("fetch", "--cache-dir", air_gapped, cwd=project)
    server.stop()  # no network from here on
    out = project / "app"
    bundler(
        "make",
        "--offline",
        "--locked",
        "--stub",
        stub_path,
        "--cache-dir",
        air_gapped,
        "--level",
        "3",
        "-o",
        out,
        cwd=project,
    )
    assert run([out, "--bundle-dir", project / "root"]).returncode == 0


def test_unchanged_groups_are_not_recompressed(served, stub_path):
    _, project, cache = served
    args = ["make", "--stub", stub_path, "--cache-dir", cache, "--level", "3", "-o", project / "app"]
    first = bundler(*args, cwd=project)
    frames = sorted((cache / "groups").glob("*.zst"))
    stamps = [f.stat().st_mtime_ns for f in frames]
    second = bundler(*args, cwd=project)
    assert "compressing" in first.stderr and "compressing" not in second.stderr
    assert sorted((cache / "groups").glob("*.zst")) == frames
    assert [f.stat().st_mtime_ns for f in frames] == stamps
    # A different level is a different group: compressed again.
    third = bundler(*args[:-4], "--level", "4", "-o", project / "app", cwd=project)
    assert "compressing" in third.stderr


def test_manifest_typo_is_one_line_with_the_line_number(tmp_path):
    (tmp_path / "bundle.toml").write_text('[bundle]\nname = "x"\nversion = "1"\nentrypiont = ["bin/x"]\n')
    failed = bundler("make", cwd=tmp_path, check=False)
    assert failed.returncode == 2
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "bundle.toml:4" in lines[0] and "entrypoint" in lines[0]


LOCAL_MANIFEST = """[bundle]
name = "local"
version = "1.0.0"
entrypoint = ["bin/true"]

[[file]]
path = "bin/true"
mode = "0755"
source = { url = "file:///bin/true" }

[[file]]
path = "etc/data.txt"
source = { url = "data.txt" }
"""


def test_a_local_file_edited_after_lock_is_refused_until_locked_again(tmp_path, stub_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "bundle.toml").write_text(LOCAL_MANIFEST)
    data = project / "data.txt"
    data.write_text("first\n")
    cache = tmp_path / "cache"
    bundler("lock", "--arch", "amd64", "--cache-dir", cache, cwd=project)
    make = ["make", "--stub", stub_path, "--cache-dir", cache, "--level", "3"]
    bundler(*make, "-o", project / "app", cwd=project)  # the old contents are now in the cache as well

    data.write_text("first\nedited after lock\n")
    for extra in ([], ["--locked"]):
        failed = bundler(*make, *extra, "-o", project / "stale", cwd=project, check=False)
        assert failed.returncode == 3, failed.stderr
        message = failed.stderr.strip().splitlines()
        assert len(message) == 1 and "Traceback" not in failed.stderr
        line = LOCAL_MANIFEST.splitlines().index('source = { url = "data.txt" }') + 1
        assert f"bundle.toml:{line}:" in message[0] and str(data) in message[0]
        assert _sha(data) in message[0] and "`bundler lock`" in message[0]
        assert not (project / "stale").exists()

    # Locking again accepts the new contents, and the bundle carries them.
    bundler("lock", "--arch", "amd64", "--cache-dir", cache, cwd=project)
    bundler(*make, "--locked", "-o", project / "app", cwd=project)
    extracted = run([project / "app", "--bundle-extract", tmp_path / "x"])
    assert extracted.returncode == 0, extracted.stderr
    assert (Path(extracted.stdout.strip()) / "etc" / "data.txt").read_text() == "first\nedited after lock\n"


def test_a_manifest_of_another_name_has_its_own_lock(served, stub_path):
    """docs/manifest.md: prod.toml -> prod.lock, for lock, fetch and make alike; bundle.lock is not looked at."""
    _, project, cache = served
    (project / "bundle.toml").rename(project / "prod.toml")
    bundler("lock", "--manifest", "prod.toml", "--arch", "amd64", "--cache-dir", cache, cwd=project)
    assert (project / "prod.lock").exists() and not (project / "bundle.lock").exists()
    bundler("fetch", "--manifest", "prod.toml", "--cache-dir", cache, cwd=project)
    out = project / "prod-app"
    bundler(
        "make",
        "--manifest",
        "prod.toml",
        "--locked",
        "--stub",
        stub_path,
        "--cache-dir",
        cache,
        "--level",
        "3",
        "-o",
        out,
        cwd=project,
    )
    assert run([out, "--bundle-dir", project / "root"]).returncode == 0
    # Another manifest's lock pins nothing for it.
    (project / "prod.lock").rename(project / "bundle.lock")
    failed = bundler(
        "make",
        "--manifest",
        "prod.toml",
        "--locked",
        "--stub",
        stub_path,
        "--cache-dir",
        cache,
        cwd=project,
        check=False,
    )
    assert failed.returncode == 2 and "not pinned" in failed.stderr

"""`bundler diff A B` on two releases made by `bundler make` (around a stand-in stub): files, groups and images
added, removed and changed with their sizes; the bytes an update fetches whole (B's frames A lacks, checked
against `bundler inspect --json`); the SBOM's package changes (a Debian package served on loopback that moves to
a new version)."""

import json

import pytest

from payload.layout import open_payload
from payload.oci.artifact import head_of, outside_spans
from testing.helpers import bundler
from testing.http_server import FileServer

MANIFEST = """[bundle]
name = "demo"
version = "{version}"
entrypoint = ["bin/hello"]

[[file]]
path = "bin/hello"
mode = "0755"
source = {{ url = "hello" }}

[[file]]
path = "share/big.bin"
group = "big"
source = {{ url = "big.bin" }}

[[file]]
path = "pkg/tool.deb"
group = "tools"
source = {{ url = "{deb}" }}
{more}
"""


@pytest.fixture
def releases(tmp_path, plain_stub):
    """1.0.0 and 1.1.0: the launcher edited, the big group untouched, the Debian package 1.0-1 -> 1.1-1 (other
    bytes and another name in the pool), share/old.txt removed and share/new.txt added in a new group."""
    www = tmp_path / "www"
    pool = www / "pool/main/t/tool"
    pool.mkdir(parents=True)
    (pool / "tool_1.0-1_amd64.deb").write_bytes(b"!<arch>\n" + b"a" * 5000)
    (pool / "tool_1.1-1_amd64.deb").write_bytes(b"!<arch>\n" + b"b" * 6000)
    work = tmp_path / "work"
    work.mkdir()
    (work / "big.bin").write_bytes(bytes(range(256)) * 2000)
    (work / "old.txt").write_text("old\n")
    (work / "new.txt").write_text("new\n" * 100)
    made = {}
    with FileServer(www) as server:
        for version, hello, deb, more in (
            (
                "1.0.0",
                "#!/bin/sh\necho 1\n",
                "tool_1.0-1_amd64.deb",
                'path = "share/old.txt"\nsource = { url = "old.txt" }',
            ),
            (
                "1.1.0",
                "#!/bin/sh\necho 1.1\n",
                "tool_1.1-1_amd64.deb",
                'path = "share/new.txt"\ngroup = "more"\nsource = { url = "new.txt" }',
            ),
        ):
            (work / "hello").write_text(hello)
            url = server.url(f"pool/main/t/tool/{deb}")
            (work / "bundle.toml").write_text(MANIFEST.format(version=version, deb=url, more="[[file]]\n" + more))
            out = work / version
            bundler("make", "--stub", plain_stub, "--cache-dir", work / "cache", "--level", "3", "-o", out, cwd=work)
            made[version] = out
    return made["1.0.0"], made["1.1.0"]


def _names(items, key="path"):
    return [item[key] for item in items]


def test_diff_names_what_changed_with_sizes_and_what_an_update_fetches(releases):
    old, new = releases
    doc = json.loads(bundler("diff", old, new, "--json").stdout)
    assert (doc["old"]["version"], doc["new"]["version"]) == ("1.0.0", "1.1.0")
    files = doc["files"]
    assert _names(files["added"]) == ["share/new.txt"] and files["added"][0]["new"]["size"] == 400
    assert _names(files["removed"]) == ["share/old.txt"] and files["removed"][0]["old"]["size"] == 4
    assert _names(files["changed"]) == ["bin/hello", "pkg/tool.deb"]
    assert [(c["old"]["size"], c["new"]["size"]) for c in files["changed"]] == [(17, 19), (5008, 6008)]
    groups = doc["groups"]
    assert _names(groups["added"], "name") == ["more"] and groups["removed"] == []
    assert _names(groups["changed"], "name") == ["bundle-sbom", "files", "tools"]  # not "big": untouched
    # What an update fetches whole: the new frames the old bundle lacks, its head (the config blob: header,
    # content index, signature, encoding table) and the ELF layer (its section table moves with the section's size).
    # This sum uses diff's own head_of and outside_spans; the independent check is test_fleet_update.py, which
    # compares diff's figure with the bytes a real registry served to a real --bundle-update.
    frames = {}
    for label, path in (("old", old), ("new", new)):
        index = json.loads(bundler("inspect", "--json", path).stdout)
        frames[label] = {f["sha256"]: f["csize"] for g in index["encoding"]["groups"] for f in g["frames"]}
    lacking = {sha: size for sha, size in frames["new"].items() if sha not in frames["old"]}
    with open(new, "rb") as f:
        payload = open_payload(str(new), f)
        head = len(head_of(payload))
        elf = sum(n for _, n in outside_spans(f, payload)[0])
    update = doc["update"]
    assert update["fetched_whole"] == sum(lacking.values()) + head + elf
    assert update["blobs"] == len(lacking) + 2 == 6 and update["of_blobs"] == len(frames["new"]) + 4
    assert update["parts"] == ["bundle-sbom", "elf", "files", "index", "more", "tools"]  # not the stub: the same
    # The SBOM's packages: the Debian package moved to its new version.
    assert doc["packages"]["changed"] == [{"name": "debian/tool", "type": "deb", "old": "1.0-1", "new": "1.1-1"}]


def test_diff_as_text_names_each_change_on_its_own_line(releases):
    old, new = releases
    text = bundler("diff", old, new).stdout
    assert "files:    + share/new.txt (400 B)" in text
    assert "files:    - share/old.txt (4 B)" in text
    assert "files:    ~ pkg/tool.deb (5.0 KB -> 6.0 KB)" in text
    assert "images:   no change" in text
    assert "packages: ~ debian/tool 1.0-1 -> 1.1-1" in text
    assert text.count("update:   fetches ") == 1


def test_a_bundle_against_itself_has_no_change_and_fetches_nothing(releases):
    old, _ = releases
    doc = json.loads(bundler("diff", old, old, "--json").stdout)
    assert all(not any(doc[what].values()) for what in ("files", "images", "groups", "packages"))
    assert doc["update"]["fetched_whole"] == 0 and doc["update"]["blobs"] == 0


def test_diff_of_a_file_that_is_not_a_bundle_is_one_line_and_exit_3(releases, tmp_path):
    old, _ = releases
    other = tmp_path / "not-a-bundle"
    other.write_bytes(b"\x7fELF" + b"\0" * 100)
    result = bundler("diff", old, other, check=False)
    assert result.returncode == 3 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and str(other) in result.stderr

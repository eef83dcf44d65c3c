"""`bundler diff A B` on two releases made by `bundler make` (around a stand-in stub): files, groups and images
added, removed and changed with their sizes; the bytes an update fetches whole (B's frames A lacks, checked
against `bundler inspect --json`); the SBOM's package changes (a Debian package served on loopback that moves to
a new version). By registry reference: tests/e2e/test_fleet_referrers.py."""

import json

import pytest

from payload.layout import open_payload
from payload.oci.artifact import head_of, outside_spans
from testing.bundles import two_releases
from testing.helpers import bundler


@pytest.fixture
def releases(tmp_path, plain_stub):
    return two_releases(tmp_path, plain_stub)


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
    assert "update:   with a delta: not known" in text  # two files, no --delta: no patch made


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

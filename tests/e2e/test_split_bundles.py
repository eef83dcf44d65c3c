"""Split bundles end to end: `make --split`, `bundler split`, the real frozen stub installing by streaming from
its parts (found beside it, through a symlink), and damaged, short and missing parts refused by name (exit 3)
with nothing installed. Checks are made with coreutils (sha256sum, cat) and readelf, not with our own reader."""

import json
import os
import shutil
import subprocess

import pytest

from testing.faults import build, expected_files, install_problems, leftovers, start, version_dirs, write_project
from testing.helpers import bundler, flip_byte, run, section_span

FILES = [
    ("bin/crun", "/usr/bin/crun", "tools"),
    ("bin/containerd-shim-runc-v2", "/usr/bin/containerd-shim-runc-v2", "tools"),
    ("bin/tee", "/usr/bin/tee", "files"),
]
PART = 1 << 20


def parts_of(exe):
    return sorted(p for p in exe.parent.iterdir() if p.name.startswith(exe.name + ".part"))


def index_of(exe):
    return json.loads(bundler("inspect", "--json", exe).stdout)


@pytest.fixture(scope="module")
def made(tmp_path_factory, cache_dir, stub_path):
    work = tmp_path_factory.mktemp("split")
    project = write_project(work / "project", FILES)
    unsplit = build(project, cache_dir)
    os.replace(unsplit, work / "unsplit")
    os.replace(str(unsplit) + ".sha256", work / "unsplit.sha256")
    split = build(project, cache_dir, "--split", "1M")
    return {
        "work": work,
        "project": project,
        "unsplit": work / "unsplit",
        "split": split,
        "expected": expected_files(project, FILES),
    }


@pytest.fixture
def carried(made, tmp_path):
    """A fresh copy of the split bundle (executable, parts, .sha256) in a directory of its own."""
    stick = tmp_path / "stick"
    stick.mkdir()
    exe = made["split"]
    for path in [exe, exe.with_name(exe.name + ".sha256")] + parts_of(exe):
        shutil.copy2(path, stick / path.name)
    return stick / exe.name


def test_parts_are_the_data_area_sliced_each_at_most_the_size_and_all_in_the_sha256_file(made):
    exe, unsplit = made["split"], made["unsplit"]
    parts = parts_of(exe)
    assert [p.name for p in parts] == [f"bundle.part{n:03d}" for n in range(1, len(parts) + 1)]
    assert len(parts) >= 3 and all(p.stat().st_size <= PART for p in parts)
    assert all(p.stat().st_size == PART for p in parts[:-1])
    # Concatenated, the parts are byte for byte the data area at the end of the unsplit bundle's section.
    joined = subprocess.run(["cat"] + [str(p) for p in parts], stdout=subprocess.PIPE, check=True).stdout
    offset, size = section_span(unsplit, "bundle")
    with open(unsplit, "rb") as f:
        f.seek(offset + size - len(joined))
        assert f.read(len(joined)) == joined
    # The executable keeps only header, index and signature: its section is small.
    assert section_span(exe, "bundle")[1] < 64 << 10
    checked = subprocess.run(["sha256sum", "-c", "bundle.sha256"], cwd=exe.parent, stdout=subprocess.PIPE, text=True)
    assert checked.returncode == 0, checked.stdout
    assert sorted(line.split(":")[0] for line in checked.stdout.splitlines()) == sorted(
        [exe.name] + [p.name for p in parts]
    )


def test_the_index_lists_every_part_with_the_size_and_sha256_coreutils_compute(made):
    exe = made["split"]
    doc = index_of(exe)
    sums = subprocess.run(
        ["sha256sum"] + [p.name for p in parts_of(exe)], cwd=exe.parent, stdout=subprocess.PIPE, text=True, check=True
    ).stdout.split()
    parts = doc["encoding"]["parts"]
    assert [(p["name"], p["size"], p["sha256"]) for p in parts] == [
        (name, (exe.parent / name).stat().st_size, sha) for sha, name in zip(sums[::2], sums[1::2])
    ]
    # The parts list is in the encoding table, not in the content index: a split bundle is the same version.
    assert doc["bundle_id"] == index_of(made["unsplit"])["bundle_id"]
    assert f"parts:      {len(parts)} beside the executable" in bundler("inspect", exe).stdout


def test_installs_by_streaming_from_its_parts_found_through_a_symlink(made, carried, tmp_path):
    elsewhere = tmp_path / "bin"
    elsewhere.mkdir()
    (elsewhere / "app").symlink_to(carried)
    root = tmp_path / "root"
    result = start(elsewhere / "app", root)
    assert result.returncode == 0 and result.stdout.startswith("RAN 1.0.0"), result.stderr
    assert install_problems(root, made["expected"]) == []
    # Installed: a second start needs no parts at all.
    for part in parts_of(carried):
        part.unlink()
    again = start(elsewhere / "app", root)
    assert again.returncode == 0 and again.stdout.startswith("RAN 1.0.0"), again.stderr


@pytest.mark.parametrize("where", ["first byte", "middle of a part", "last byte of the last part"])
def test_a_damaged_part_is_named_exit_3_and_nothing_is_installed(carried, tmp_path, where):
    parts = parts_of(carried)
    damaged = {
        "first byte": (parts[0], 0),
        "middle of a part": (parts[1], PART // 2),
        "last byte of the last part": (parts[-1], parts[-1].stat().st_size - 1),
    }[where]
    flip_byte(*damaged)
    root = tmp_path / "root"
    result = start(carried, root)
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.stderr
    assert f"part {damaged[0].name} does not match its sha256" in result.stderr.splitlines()[-1]
    assert version_dirs(root) == [] and leftovers(root) == [] and "RAN" not in result.stdout
    verify = run([carried, "--bundle-verify"])
    assert verify.returncode == 3 and damaged[0].name in verify.stderr
    host = bundler("verify", carried, check=False)
    assert host.returncode == 3 and damaged[0].name in host.stderr


def test_a_missing_or_short_part_is_named_before_anything_is_written(made, carried, tmp_path):
    parts = parts_of(carried)
    root = tmp_path / "root"
    parts[-1].unlink()
    missing = start(carried, root)
    assert missing.returncode == 3 and f"part {parts[-1].name} is missing" in missing.stderr, missing.stderr
    assert str(carried.parent) in missing.stderr and missing.stderr.count("\n") == 1
    assert run([carried, "--bundle-verify"]).returncode == 3
    assert "is missing" in bundler("verify", carried, check=False).stderr
    shutil.copy2(made["split"].with_name(parts[-1].name), parts[-1])
    with open(parts[1], "r+b") as f:
        f.truncate(1000)
    short = start(carried, root)
    assert short.returncode == 3 and f"part {parts[1].name} is 1000 bytes, expected {PART}" in short.stderr
    assert version_dirs(root) == [] and leftovers(root) == []


def test_verify_checks_every_part_and_info_lists_them(carried):
    verify = run([carried, "--bundle-verify"])
    assert verify.returncode == 0 and f"{len(parts_of(carried))} parts verified" in verify.stdout, verify.stderr
    assert f"parts:      {len(parts_of(carried))} beside the executable" in run([carried, "--bundle-info"]).stdout
    assert "parts verified" in bundler("verify", carried).stdout


def test_bundler_split_of_a_bundle_already_made_installs_the_same_files(made, tmp_path):
    exe = tmp_path / "app"
    shutil.copy2(made["unsplit"], exe)
    said = bundler("split", exe, "--size", "700K").stdout
    parts = parts_of(exe)
    assert len(parts) >= 5 and all(p.stat().st_size <= 700 << 10 for p in parts)
    assert f"{len(parts)} parts beside it" in said
    assert subprocess.run(["sha256sum", "-c", "--quiet", "app.sha256"], cwd=tmp_path).returncode == 0
    result = start(exe, tmp_path / "root")
    assert result.returncode == 0 and result.stdout.startswith("RAN 1.0.0"), result.stderr
    assert install_problems(tmp_path / "root", made["expected"]) == []

    # Split again in place with a larger size: the parts of the earlier split are gone, the new ones hold.
    bundler("split", exe, "--size", "2M")
    assert len(parts_of(exe)) == len(index_of(exe)["encoding"]["parts"]) < len(parts)
    assert subprocess.run(["sha256sum", "-c", "--quiet", "app.sha256"], cwd=tmp_path).returncode == 0
    assert run([exe, "--bundle-verify"]).returncode == 0


def test_split_to_another_output_leaves_the_bundle_as_it_was(made, tmp_path):
    before = subprocess.run(["sha256sum", made["unsplit"]], stdout=subprocess.PIPE, text=True).stdout.split()[0]
    bundler("split", made["unsplit"], "--size", "1M", "--output", tmp_path / "out" / "app")
    after = subprocess.run(["sha256sum", made["unsplit"]], stdout=subprocess.PIPE, text=True).stdout.split()[0]
    assert before == after and parts_of(made["unsplit"]) == []
    assert run([tmp_path / "out" / "app", "--bundle-verify"]).returncode == 0


def test_sizes_are_checked(made, tmp_path):
    bad = bundler("split", made["unsplit"], "--size", "12Q", "-o", tmp_path / "x", check=False)
    assert bad.returncode == 2 and "is not a size" in bad.stderr
    tiny = bundler("split", made["unsplit"], "--size", "1K", "-o", tmp_path / "x", check=False)
    assert tiny.returncode == 2 and "smallest part" in tiny.stderr
    assert list(tmp_path.iterdir()) == []


def _keyless_env(home):
    """The environment of an operator who holds no key: no variable naming one, a HOME with nothing in it."""
    env = {k: v for k, v in os.environ.items() if "KEY" not in k.upper() and not k.startswith("BUNDLER_SIGN")}
    home.mkdir()
    return dict(env, HOME=str(home))


def _installed(root, bundle_id):
    """(inode of the version directory, inode and mtime_ns of its marker): unchanged when nothing is extracted."""
    version, marker = root / bundle_id, root / bundle_id / ".bundle-installed"
    return version.stat().st_ino, marker.stat().st_ino, marker.stat().st_mtime_ns


def test_split_copy_and_repack_of_a_signed_bundle_need_no_key_and_are_one_install(made, tmp_path, cache_dir):
    keys = tmp_path / "keys"
    keys.mkdir()
    bundler("keygen", "--out", keys / "release")
    pub = tmp_path / "release.pub"
    shutil.copy2(keys / "release.pub", pub)
    signed = build(made["project"], cache_dir, "--sign", keys / "release.key", "--require-key", pub)
    original = tmp_path / "original"
    shutil.copy2(signed, original)
    shutil.rmtree(keys)  # the private key is gone: nothing below can sign
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()[:4096]]
    env = _keyless_env(tmp_path / "home")
    bundle_id = index_of(original)["bundle_id"]

    split = tmp_path / "split" / "app"
    bundler("split", original, "--size", "1M", "--output", split, env=env, inherit_env=False)
    stick = tmp_path / "stick"
    stick.mkdir()
    bundler("copy", original, stick, "--split", "1M", env=env, inherit_env=False)
    repacked = tmp_path / "repacked"
    bundler(
        "repack",
        original,
        "--level",
        "1",
        "--frame-size",
        "1M",
        "-o",
        repacked,
        "--cache-dir",
        cache_dir,
        env=env,
        inherit_env=False,
    )
    results = {"split": split, "copy --split": stick / "original", "repack": repacked}
    assert parts_of(split) and parts_of(stick / "original")
    # Packed differently, the same content: the same bundle id and the same signature block.
    assert index_of(repacked)["encoding"] != index_of(original)["encoding"]
    for how, exe in results.items():
        doc = index_of(exe)
        assert doc["bundle_id"] == bundle_id and doc["signature"] == index_of(original)["signature"], how
        checked = run([exe, "--bundle-verify", "--bundle-key", pub])
        assert checked.returncode == 0 and "signature: ok" in checked.stdout, (how, checked.stderr)
        # On a fresh device, with the key given: it installs, runs, and pins the key.
        root = tmp_path / f"root-{how}"
        result = start(exe, root, "--bundle-key", pub)
        assert result.returncode == 0 and result.stdout.startswith(f"RAN 1.0.0 {bundle_id}"), (how, result.stderr)
        assert install_problems(root, made["expected"]) == [] and len(list((root / ".trusted-keys").iterdir())) == 1

    # On one device: the original installs once; each of the others is the same install, not a second one.
    root = tmp_path / "device"
    first = start(original, root, "--bundle-key", pub)
    assert first.returncode == 0 and "installing" in first.stderr, first.stderr
    before = _installed(root, bundle_id)
    for how, exe in results.items():
        again = start(exe, root)  # the pin is there now: a signed bundle by that key starts
        assert again.returncode == 0 and again.stdout.startswith(f"RAN 1.0.0 {bundle_id}"), (how, again.stderr)
        assert "installing" not in again.stderr and _installed(root, bundle_id) == before, how
    assert version_dirs(root) == [bundle_id]


def test_an_unsplit_make_over_a_split_output_removes_the_old_parts(made, cache_dir):
    project = made["project"]
    exe = project / "dist" / "again"
    build(project, cache_dir, "--split", "1M", "--output", exe)  # the last --output is the one taken
    assert parts_of(exe)
    bundler("make", "--cache-dir", cache_dir, "--level", 3, "--output", exe, cwd=project)
    assert parts_of(exe) == [] and run([exe, "--bundle-verify"]).returncode == 0


def test_split_and_repack_carry_the_sbom_and_provenance_beside_their_output(made, tmp_path, cache_dir):
    exe = made["split"]  # make wrote bundle.spdx.json and bundle.intoto.json beside it
    sides = {suffix: exe.with_name(exe.name + suffix).read_bytes() for suffix in (".spdx.json", ".intoto.json")}
    split, repacked = tmp_path / "split" / "app", tmp_path / "repacked" / "app"
    for out in (split, repacked):
        out.parent.mkdir()
        out.with_name("app.cdx.json").write_text("{}")  # left by another build: it goes
    bundler("split", exe, "--size", "2M", "--output", split)
    bundler("repack", exe, "--level", "1", "-o", repacked, "--cache-dir", cache_dir)
    for out in (split, repacked):
        assert sorted(p.name for p in out.parent.iterdir() if ".part" not in p.name) == [
            "app",
            "app.intoto.json",
            "app.sha256",
            "app.spdx.json",
        ]
        assert {s: out.with_name("app" + s).read_bytes() for s in sides} == sides, out
        assert bundler("inspect", "--sbom", out).stdout.encode() == sides[".spdx.json"]

    # In place, the side files stay as they are; a damaged one is refused before anything is written.
    bundler("split", split, "--size", "1M")
    assert split.with_name("app.spdx.json").read_bytes() == sides[".spdx.json"]
    flip_byte(split.with_name("app.spdx.json"), 10)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in split.parent.iterdir())
    for command in (["split", split, "--size", "3M"], ["repack", split, "--level", "1", "--cache-dir", cache_dir]):
        refused = bundler(*command, check=False)
        assert refused.returncode == 3 and "app.spdx.json does not belong to" in refused.stderr, refused.stderr
        assert sorted((p.name, p.stat().st_mtime_ns) for p in split.parent.iterdir()) == before

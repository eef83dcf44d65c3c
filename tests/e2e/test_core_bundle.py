"""A real bundle from real binaries: /usr/bin/crun and a small script as entrypoint, built by the real CLI
with a real PyInstaller stub, then run as a user would run it."""

import hashlib
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from payload.layout import open_payload
from payload.rules import SBOM_PATHS
from testing.helpers import bundler, flip_byte, run, section_span

HELLO = """#!/bin/sh
echo "ARGC=$#"
for a in "$@"; do printf 'ARG=[%s]\\n' "$a"; done
for v in BUNDLE_ROOT BUNDLE_IMAGES BUNDLE_DATA BUNDLE_ID BUNDLE_VARIANT BUNDLE_ARCH BUNDLE_EXECUTABLE \\
    LD_LIBRARY_PATH _PYI_ARCHIVE_FILE; do
  eval "printf '%s=%s\\n' $v \\"\\${$v-<unset>}\\""
done
[ -d "$BUNDLE_DATA" ] && echo "DATA_IS_A_DIR=yes"
"$BUNDLE_ROOT/bin/crun" --version | head -n 1
exit ${HELLO_EXIT:-0}
"""

MANIFEST = """
[bundle]
name = "demo"
version = "{version}"
entrypoint = ["bin/hello", "--root", "{{root}}"]
host_libs = ["libsystemd.so.0", "libseccomp.so.2", "libcap.so.2", "libyajl.so.2"]  # crun's, from this host

[[file]]
path = "bin/hello"
mode = "0755"
source = {{ url = "hello.sh" }}

[[file]]
path = "bin/crun"
mode = "0755"
source = {{ url = "file:///usr/bin/crun" }}

[variants.online]
embed = []
[variants.offline]
embed = "all"
"""


def write_project(directory, version="1.0.0"):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hello.sh").write_text(HELLO)
    (directory / "bundle.toml").write_text(MANIFEST.format(version=version))
    return directory


@pytest.fixture(scope="module")
def built(tmp_path_factory, cache_dir, stub_path):
    project = write_project(tmp_path_factory.mktemp("project"))
    result = bundler("make", "--variant", "offline", "--cache-dir", cache_dir, "--level", "9", cwd=project)
    exe = project / "dist" / "demo-1.0.0-offline-amd64"
    assert exe.exists(), result.stderr
    return exe


@pytest.fixture
def bundle(built, tmp_path):
    """A fresh copy of the bundle, as if carried to a device on a USB stick."""
    exe = tmp_path / "demo"
    shutil.copy2(built, exe)
    return exe


def test_output_is_executable_with_a_checksum_file_sha256sum_accepts(built):
    assert os.access(built, os.X_OK)
    checked = subprocess.run(
        ["sha256sum", "-c", built.name + ".sha256"], cwd=built.parent, stdout=subprocess.PIPE, text=True
    )
    assert checked.returncode == 0 and "OK" in checked.stdout
    # The payload sits in its own section, before PyInstaller's archive.
    assert section_span(built, "bundle")[0] < section_span(built, "pydata")[0]


def test_arguments_pass_through_untouched_and_environment_is_set(bundle, tmp_path):
    root = tmp_path / "root"
    args = ["serve", "--port", "80", "", "two words", "--bundle-dir", "$HOME", "*"]
    result = run([bundle, "--bundle-dir", root] + args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    installed = os.path.realpath(root / "current")
    assert lines[0] == f"ARGC={2 + len(args)}"
    assert lines[1:3] == ["ARG=[--root]", f"ARG=[{installed}]"]
    assert lines[3 : 3 + len(args)] == [f"ARG=[{a}]" for a in args]
    env = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("ARG"))
    assert env["BUNDLE_ROOT"] == installed
    assert env["BUNDLE_IMAGES"] == os.path.join(installed, "images")
    # The state that outlives versions: there before the runtime starts, beside the versions.
    assert env["BUNDLE_DATA"] == str(root / "data") and env.get("DATA_IS_A_DIR") == "yes"
    assert env["BUNDLE_VARIANT"] == "offline" and env["BUNDLE_ARCH"] == "amd64"
    assert env["BUNDLE_ID"] == os.path.basename(installed)
    assert env["BUNDLE_EXECUTABLE"] == os.path.realpath(bundle)  # what the runtime runs for --bundle-mark-good
    assert "_MEI" not in env["LD_LIBRARY_PATH"] and env["_PYI_ARCHIVE_FILE"] == "<unset>"
    crun_version = subprocess.run(["/usr/bin/crun", "--version"], stdout=subprocess.PIPE, text=True).stdout
    assert crun_version.splitlines()[0] in lines
    # The installed binary is byte for byte the original, and the id is the sha256 of the index.
    assert (root / "current" / "bin" / "crun").read_bytes() == Path("/usr/bin/crun").read_bytes()
    info = json.loads(run([bundle, "--bundle-info", "--json"]).stdout)
    assert info["bundle_id"] == env["BUNDLE_ID"]


def test_exit_code_of_the_runtime_is_the_bundles(bundle, tmp_path):
    result = run([bundle, "--bundle-dir", tmp_path / "root"], env={"HELLO_EXIT": "7"})
    assert result.returncode == 7


def test_second_start_does_no_extraction(bundle, tmp_path):
    root = tmp_path / "root"
    first = run([bundle, "--bundle-dir", root, "x"])
    assert first.returncode == 0 and "installing" in first.stderr
    marker = root / "current" / ".bundle-installed"
    stamp = marker.stat().st_mtime_ns
    # Remove an installed file: an install (or a re-verification) would bring it back; the fast path must not look.
    (root / "current" / "bin" / "crun").unlink()
    second = run([bundle, "--bundle-dir", root, "x"])
    assert "installing" not in second.stderr
    assert not (root / "current" / "bin" / "crun").exists()
    assert marker.stat().st_mtime_ns == stamp


def test_corrupted_byte_is_refused_with_exit_3_and_nothing_left(bundle, tmp_path):
    with open(bundle, "rb") as f:  # inside the compressed data of group 'files'
        payload = open_payload(str(bundle), f)
        (frame,) = next(g for g in payload.index.groups if g.name == "files").frames
    flip_byte(bundle, payload.data_offset + frame.offset + frame.csize - 100)
    root = tmp_path / "root"
    result = run([bundle, "--bundle-dir", root, "x"])
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert "Traceback" not in result.stderr and len(errors) == 1
    assert errors[0].startswith("demo: error: group 'files'")  # names the group that does not hold
    assert "ARGC" not in result.stdout
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".lock")) == []
    assert run([bundle, "--bundle-verify"]).returncode == 3


def test_bundle_verify_and_build_host_verify_agree(built):
    assert run([built, "--bundle-verify"]).returncode == 0
    assert "ok" in bundler("verify", built).stdout
    inspected = json.loads(bundler("inspect", "--json", built).stdout)
    assert {e["path"] for e in inspected["entries"]} == {"bin/hello", "bin/crun", SBOM_PATHS["spdx"]}
    crun = next(e for e in inspected["entries"] if e["path"] == "bin/crun")
    assert crun["sha256"] == hashlib.sha256(Path("/usr/bin/crun").read_bytes()).hexdigest()
    assert crun["mode"] == 0o755


def test_eight_concurrent_first_starts_extract_once_and_all_run(bundle, tmp_path):
    root = tmp_path / "root"
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: run([bundle, "--bundle-dir", root, f"start{i}"]), range(8)))
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results]
    assert sum("installing" in r.stderr for r in results) == 1
    for i, r in enumerate(results):
        assert f"ARG=[start{i}]" in r.stdout
    installed = [p for p in root.iterdir() if not p.name.startswith(".") and not p.is_symlink() and p.name != "data"]
    assert len(installed) == 1


def test_bundle_extract_installs_without_running(bundle, tmp_path):
    result = run([bundle, "--bundle-extract", tmp_path / "x"])
    assert result.returncode == 0 and "ARGC" not in result.stdout
    assert Path(result.stdout.strip(), "bin", "crun").read_bytes() == Path("/usr/bin/crun").read_bytes()


def test_payload_goes_into_a_stub_of_another_architecture(tmp_path, cache_dir, stub_path):
    """A stub prebuilt on an arm64 machine: here, the real stub with its ELF machine set to AArch64 (183).
    The writer must not care about the architecture; readelf (binutils) checks the result."""
    foreign = tmp_path / "stub-arm64"
    data = bytearray(stub_path.read_bytes())
    data[18:20] = (183).to_bytes(2, "little")  # e_machine of an ELF64 little-endian header
    foreign.write_bytes(bytes(data))
    project = write_project(tmp_path / "project")
    manifest = project / "bundle.toml"  # an arm64 bundle takes no amd64 binary (the ABI gate refuses it)
    manifest.write_text(manifest.read_text().replace('url = "file:///usr/bin/crun"', 'url = "hello.sh"'))
    out = tmp_path / "demo-arm64"
    bundler(
        "make", "--arch", "arm64", "--stub", foreign, "--cache-dir", cache_dir, "--level", "3", "-o", out, cwd=project
    )
    header = subprocess.run(["readelf", "-h", str(out)], stdout=subprocess.PIPE, text=True, check=True).stdout
    assert "AArch64" in header
    assert section_span(out, "bundle")[0] < section_span(out, "pydata")[0]
    assert json.loads(bundler("inspect", "--json", out).stdout)["arch"] == "arm64"
    assert "ok" in bundler("verify", out).stdout
    # A stub whose architecture is not the target's is refused before anything is downloaded.
    wrong = bundler("make", "--arch", "amd64", "--stub", foreign, "--cache-dir", cache_dir, cwd=project, check=False)
    assert wrong.returncode == 2 and "arm64" in wrong.stderr and "Traceback" not in wrong.stderr


def test_damage_outside_the_payload_section_is_refused_by_first_start_and_both_verifies(bundle, tmp_path):
    # A flip the bootloader cannot notice (its .comment section is never read): our first start must refuse it.
    comment, _ = section_span(bundle, ".comment")
    flip_byte(bundle, comment + 2)
    root = tmp_path / "root"
    result = run([bundle, "--bundle-dir", root, "x"])
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "the stub (bootloader" in errors[0] and "Traceback" not in result.stderr
    assert "ARGC" not in result.stdout
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".lock")) == []
    assert run([bundle, "--bundle-verify"]).returncode == 3
    verified = bundler("verify", bundle, check=False)
    assert verified.returncode == 3 and "the stub (bootloader" in verified.stderr


def test_a_flip_inside_pyinstallers_archive_fails_bundler_verify(bundle, tmp_path):
    offset, size = section_span(bundle, "pydata")
    flip_byte(bundle, offset + size // 2)
    verified = bundler("verify", bundle, check=False)
    assert verified.returncode == 3 and "the stub (bootloader" in verified.stderr, verified.stdout
    # Run, the bootloader meets the damage before any code of ours (docs/reliability.md): whatever it says,
    # nothing is installed and nothing runs.
    root = tmp_path / "root"
    result = run([bundle, "--bundle-dir", root, "x"])
    assert result.returncode != 0 and "ARGC" not in result.stdout
    assert not root.exists() or sorted(p.name for p in root.iterdir() if not p.name.startswith(".lock")) == []


def test_the_stub_sha256_is_the_same_whatever_the_section_holds(built, tmp_path):
    # A split writes a payload section of another size (so other offsets in the ELF header and section table):
    # the stub's sha256 in the content index still holds, and it is the one of the bare stub's code.
    bundler("split", built, "--size", "64K", "--output", tmp_path / "split" / "app")
    whole = json.loads(bundler("inspect", "--json", built).stdout)
    split = json.loads(bundler("inspect", "--json", tmp_path / "split" / "app").stdout)
    assert whole["stub_sha256"] == split["stub_sha256"] and whole["bundle_id"] == split["bundle_id"]
    assert bundler("verify", tmp_path / "split" / "app").returncode == 0

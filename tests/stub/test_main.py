"""stub.main in-process (and as `python -m stub`), on bundles built by `bundler make` around a stand-in stub:
install once, verified; damage refused with nothing installed; info, verify, the runtime's exit code and args."""

import json
import os
import stat
import subprocess
import sys

import pytest

from payload.layout import open_payload
from payload.rules import SBOM_GROUP
from stub import main as stub_main
from stub.root import MARKER
from testing.bundles import make_bundle
from testing.helpers import ROOT, flip_byte, run_on_a_terminal


@pytest.fixture
def bundle(tmp_path, plain_stub):
    return make_bundle(tmp_path / "build", plain_stub)


def run_stub(monkeypatch, capsys, path, *args):
    """stub.main as the device runs it; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("BUNDLE_EXECUTABLE", str(path))
    try:
        code = stub_main.main(["demo", *map(str, args)])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def names(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def test_extract_installs_every_file_with_its_mode_and_the_marker_last(bundle, tmp_path, monkeypatch, capsys):
    path, index = bundle
    root = tmp_path / "root"
    code, out, err = run_stub(monkeypatch, capsys, path, "--bundle-extract", root)
    assert code == 0 and "installing demo 1.0.0" in err
    version = root / index.bundle_id
    assert out.strip() == str(version)
    assert (version / MARKER).read_text().strip() == index.bundle_id
    assert stat.S_IMODE((version / "bin" / "hello").stat().st_mode) == 0o755
    assert stat.S_IMODE((version / "share" / "data.txt").stat().st_mode) == 0o644
    assert (version / "share" / "data.txt").read_text() == "data\n"
    assert os.readlink(root / "current") == index.bundle_id
    assert not [n for n in names(root) if ".tmp-" in n]


def test_a_second_start_extracts_nothing(bundle, tmp_path, monkeypatch, capsys):
    path, _ = bundle
    root = tmp_path / "root"
    run_stub(monkeypatch, capsys, path, "--bundle-extract", root)
    code, _, err = run_stub(monkeypatch, capsys, path, "--bundle-extract", root)
    assert code == 0 and "installing" not in err


def test_a_damaged_group_is_exit_3_and_installs_nothing(bundle, tmp_path, monkeypatch, capsys):
    path, index = bundle
    with open(path, "rb") as f:
        payload = open_payload(str(path), f)
        group = payload.index.groups[0]
        flip_byte(path, payload.data_offset + group.offset + group.csize // 2)
    root = tmp_path / "root"
    code, _, err = run_stub(monkeypatch, capsys, path, "--bundle-extract", root)
    assert code == 3
    assert err.strip().splitlines()[-1].startswith("demo: error: group 'files' does not match its sha256")
    assert index.bundle_id not in names(root) and not [n for n in names(root) if ".tmp-" in n]
    assert not os.path.lexists(root / "current")


def test_a_first_install_decodes_while_its_checks_run(bundle, tmp_path, monkeypatch, capsys):
    """The largest group's decoder reads the frame from before the checks that precede any write: by the time the
    signature is checked it has taken compressed bytes, with nothing written yet. A refusal there (a key that did not
    sign it) drops it: nothing installed, no thread left."""
    import threading

    from stub import install, trust

    path, _ = bundle
    started = []
    real_start, real_check = install.start_decompressing, trust.check_before_install

    def start(*args):
        started.append(real_start(*args))
        return started[-1]

    def check(payload, root, *args, **kwargs):
        run = started[0]
        for _ in range(600):  # a wait for the decoder's thread, not a timed assertion
            if run.jobs and run.jobs[0].taken:
                break
            threading.Event().wait(0.05)
        taken = bool(run.jobs and run.jobs[0].taken)
        seen.append((taken, os.path.exists(root) and [n for n in os.listdir(root) if ".tmp-" in n]))
        return real_check(payload, root, *args, **kwargs)

    seen = []
    monkeypatch.setattr(install, "start_decompressing", start)
    monkeypatch.setattr(trust, "check_before_install", check)
    code, _, err = run_stub(monkeypatch, capsys, path, "--bundle-extract", tmp_path / "root")
    assert code == 0, err
    assert seen == [(True, [])]  # decoded ahead, nothing written
    threads = threading.active_count()
    key = tmp_path / "other.pub"
    subprocess.run(
        [sys.executable, "-m", "bundler", "keygen", "--out", str(tmp_path / "other")], check=True, capture_output=True
    )
    code, _, err = run_stub(monkeypatch, capsys, path, "--bundle-extract", tmp_path / "root2", "--bundle-key", key)
    assert code == 3, err
    assert set(names(tmp_path / "root2")) <= {".locks"}  # the root prepared, nothing installed
    assert threading.active_count() == threads and started[-1].reader is not None and not started[-1].reader.is_alive()


def test_info_json_and_verify(bundle, monkeypatch, capsys):
    path, index = bundle
    code, out, _ = run_stub(monkeypatch, capsys, path, "--bundle-info", "--json")
    assert code == 0 and json.loads(out)["bundle_id"] == index.bundle_id
    code, out, _ = run_stub(monkeypatch, capsys, path, "--bundle-verify")
    assert code == 0 and out.strip()


def test_verify_names_a_damaged_bundle(bundle, monkeypatch, capsys):
    path, _ = bundle
    with open(path, "rb") as f:
        payload = open_payload(str(path), f)
        flip_byte(path, payload.data_offset + 3)
    code, _, err = run_stub(monkeypatch, capsys, path, "--bundle-verify")
    assert code == 3 and "demo: error:" in err


def test_unknown_bundle_option_is_a_usage_error(bundle, monkeypatch, capsys):
    path, _ = bundle
    code, _, err = run_stub(monkeypatch, capsys, path, "--bundle-nope")
    assert code == 2 and "--bundle-nope" in err


def python_stub(path, root, *args):
    env = dict(os.environ, BUNDLE_EXECUTABLE=str(path), BUNDLE_DIR=str(root), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "stub", *args], env=env, capture_output=True, text=True, cwd=ROOT)


def test_the_runtime_gets_its_args_and_environment_and_its_exit_code_is_the_bundles(bundle, tmp_path):
    path, index = bundle
    root = tmp_path / "root"
    result = python_stub(path, root, "--", "--bundle-info", "two words")
    assert result.returncode == 7, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "hello --bundle-info two words"  # after --, even a bundle option is the runtime's
    assert lines[1] == f"root={root / index.bundle_id}"


def test_install_shows_a_bar_on_a_terminal_only(bundle, tmp_path):
    path, _ = bundle
    env = {"BUNDLE_EXECUTABLE": str(path)}
    code, _, seen = run_on_a_terminal([sys.executable, "-m", "stub", "--bundle-extract", tmp_path / "tty"], ROOT, env)
    assert code == 0 and "installing files" in seen and "100%" in seen
    quiet = python_stub(path, tmp_path / "quiet", "--bundle-extract", tmp_path / "quiet")
    assert quiet.returncode == 0 and "%" not in quiet.stderr and "\r" not in quiet.stderr


# ---------------------------------------------------------------- groups of several frames


@pytest.fixture
def framed(tmp_path, plain_stub):
    """A bundle whose files group is cut into three frames (frames of at least 128 KiB)."""
    files = {"bin/hello": ("#!/bin/sh\nexit 0\n", "0755")}
    for n in range(6):
        files[f"share/part{n}.bin"] = (os.urandom(20000) * 2 + bytes([n]) * 30000, "0644")
    path, index = make_bundle(tmp_path / "build", plain_stub, files=files, frame_size=128 << 10)
    assert [len(g.frames) for g in index.groups] == [3, 1]  # the files, and the SBOM's own group
    return path, index, tmp_path / "build" / "src"


def test_a_group_of_several_frames_installs_every_file(framed, tmp_path, monkeypatch, capsys):
    path, index, src = framed
    root = tmp_path / "root"
    code, _, err = run_stub(monkeypatch, capsys, path, "--bundle-extract", root)
    assert code == 0, err
    names_ = sorted(e.path for e in index.files() if e.group != SBOM_GROUP)
    sums = [
        subprocess.run(["sha256sum", "--"] + names_, cwd=str(d), stdout=subprocess.PIPE, check=True).stdout.split()[
            0::2
        ]
        for d in (src, root / index.bundle_id)
    ]
    assert sums[0] == sums[1] and len(sums[0]) == 7


def test_a_corrupt_frame_in_the_middle_is_named_and_nothing_is_installed(framed, tmp_path, monkeypatch, capsys):
    path, index, _ = framed
    with open(path, "rb") as f:
        payload = open_payload(str(path), f)
        middle = payload.index.groups[0].frames[1]
        flip_byte(path, payload.data_offset + middle.offset + middle.csize // 2)
    root = tmp_path / "root"
    code, _, err = run_stub(monkeypatch, capsys, path, "--bundle-extract", root)
    assert code == 3
    assert "group 'files' frame 2 of 3" in err.strip().splitlines()[-1]
    assert index.bundle_id not in names(root) and not [n for n in names(root) if ".tmp-" in n]
    assert not os.path.lexists(root / "current")


def test_info_and_verify_show_each_groups_frames(framed, monkeypatch, capsys):
    path, index, _ = framed
    sizes = " + ".join(f"{f.size / 1e6:.1f}" for f in index.groups[0].frames)
    code, out, _ = run_stub(monkeypatch, capsys, path, "--bundle-info")
    group = index.groups[0]
    assert 1000 <= group.size < 1_000_000  # under a megabyte: the line says KB
    assert code == 0 and f"group:      files: {group.size / 1e3:.1f} KB as {group.csize / 1e3:.1f} KB" in out
    assert f"in 3 frame(s) of {sizes} MB" in out
    code, out, _ = run_stub(monkeypatch, capsys, path, "--bundle-info", "--json")
    assert [len(g["frames"]) for g in json.loads(out)["encoding"]["groups"]] == [3, 1]
    code, out, _ = run_stub(monkeypatch, capsys, path, "--bundle-verify")
    assert code == 0 and "ok, 8 entries in 2 group(s) of 4 frame(s) verified" in out

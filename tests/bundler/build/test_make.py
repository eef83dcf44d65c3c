"""`bundler make` as a user runs it (a real subprocess, a real stand-in stub: /bin/true with a `pydata` section):
a damaged cache is re-checked and mended, Ctrl-C and kill -9 leave nothing behind, bad output paths are one line
and an exit code, no error prints a traceback, --json, and a progress bar on a terminal only."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from testing.helpers import ROOT, bundler, flip_byte, run_on_a_terminal
from testing.http_server import FileServer

MANIFEST = """
[bundle]
name = "demo"
version = "1.0.0"
entrypoint = ["bin/hello"]

[[file]]
path = "bin/hello"
mode = "0755"
source = {{ url = "{hello}" }}

[[file]]
path = "share/data.bin"
source = {{ url = "{data}", sha256 = "{data_sha}" }}
"""


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree(path):
    """Every name under `path` (relative), for nothing-left-behind checks."""
    path = Path(path)
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def project(tmp_path):
    """A manifest with a local file and a pinned download from a real HTTP server on 127.0.0.1."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "data.bin").write_bytes(random.Random(3).randbytes(200_000))
    work = tmp_path / "project"
    work.mkdir()
    (work / "hello").write_text("#!/bin/sh\necho hello\n")
    with FileServer(www) as server:
        (work / "bundle.toml").write_text(
            MANIFEST.format(hello="hello", data=server.url("data.bin"), data_sha=sha256(www / "data.bin"))
        )
        yield work, server, tmp_path / "cache"


def make(work, cache, stub, *args, check=True):
    return bundler("make", "--stub", stub, "--cache-dir", cache, "--level", "3", *args, cwd=work, check=check)


def verify(path):
    return bundler("verify", path, check=False)


# the cache is checked, not trusted by name


def test_a_damaged_cached_group_is_dropped_and_compressed_again(project, plain_stub):
    work, _, cache = project
    make(work, cache, plain_stub, "-o", "app")
    frames = sorted((cache / "groups").glob("*.zst"), key=lambda p: p.stat().st_size, reverse=True)
    assert len(frames) == 2  # the files, and the SBOM's own group
    flip_byte(frames[0], frames[0].stat().st_size // 2)
    result = make(work, cache, plain_stub, "-o", "app2")
    assert "is damaged" in result.stderr and frames[0].name in result.stderr
    assert verify(work / "app2").returncode == 0
    assert sha256(work / "app2") == sha256(work / "app")


def test_a_damaged_cached_blob_is_dropped_and_fetched_again(project, plain_stub):
    work, server, cache = project
    make(work, cache, plain_stub, "-o", "app")
    pinned = sha256(server.root / "data.bin")
    blob = cache / "blobs" / "sha256" / pinned
    os.chmod(blob, 0o644)
    flip_byte(blob, 1000)
    groups = cache / "groups"
    for frame in groups.iterdir():  # so that the blob is read again, not only its cached group
        frame.unlink()
    before = server.requests["/data.bin"]
    result = make(work, cache, plain_stub, "-o", "app2")
    assert "is damaged" in result.stderr and pinned in result.stderr
    assert server.requests["/data.bin"] == before + 1
    assert sha256(blob) == pinned
    assert verify(work / "app2").returncode == 0


def test_what_make_writes_is_read_back(project, plain_stub, tmp_path):
    """A frame whose recorded sha256 is right but whose bytes change between the check and the write cannot be
    made on demand; the read-back is shown on write_bundle with a group that does not hold its record."""
    from bundler.build.assemble import build_index, write_bundle
    from bundler.build.compress import CompressedGroup, Member, stored_frames

    data = tmp_path / "frame.zst"
    data.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 20)
    member = Member("x", 0o644, "file", data, hashlib.sha256(b"").hexdigest(), 0)
    group = CompressedGroup("files", (member,), data, stored_frames([(1, 0, 24, "0" * 64)]))  # its frame does not match
    identity = {"name": "demo", "version": "1", "variant": "v", "arch": "amd64", "entrypoint": ["x"]}
    from payload.errors import IntegrityError

    (tmp_path / "dist").mkdir()
    with pytest.raises(IntegrityError, match="does not match its sha256"):
        write_bundle(plain_stub, build_index(identity, [group]), [group], tmp_path / "dist" / "app")
    assert tree(tmp_path / "dist") == []


# Ctrl-C and kill -9


def big_project(tmp_path):
    """60 MB of words: zstd -19 takes a while over it, long enough to be interrupted in the middle."""
    rng = random.Random(1)
    words = [bytes(rng.randrange(97, 123) for _ in range(rng.randrange(2, 9))) for _ in range(5000)]
    work = tmp_path / "big"
    work.mkdir()
    with open(work / "big.bin", "wb") as out:
        for _ in range(60):
            out.write(b" ".join(rng.choice(words) for _ in range(180_000))[: 1 << 20])
    (work / "bundle.toml").write_text(
        '[bundle]\nname = "big"\nversion = "1"\nentrypoint = ["big.bin"]\n\n'
        '[[file]]\npath = "big.bin"\nmode = "0755"\nsource = { url = "big.bin" }\n'
    )
    return work


def _interruptible():
    """In the child, before it runs: SIGINT back to its default. A suite started in the background by a
    non-interactive shell inherits SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_make(work, cache, stub):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bundler",
            "make",
            "--stub",
            str(stub),
            "--cache-dir",
            str(cache),
            "--level",
            "19",
            "-o",
            str(work / "dist" / "big"),
        ],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_interruptible,
    )


def wait_for_compression(proc, cache, groups=1):
    """Block until the child says it compresses `groups` groups besides the SBOM's (which starts beside them and
    may be first) and a frame's temp file has bytes. Returns what it said."""
    said, started = [], 0
    while started < groups:
        said.append(proc.stderr.readline())
        assert said[-1], "make ended before compressing: {}".format("".join(said))
        started += "compressing group" in said[-1] and "'bundle-sbom'" not in said[-1]
    while not any(_has_bytes(p) for p in (cache / "tmp").iterdir()):
        assert proc.poll() is None, "make ended before its frame was written to"
    return "".join(said)


def _has_bytes(path):
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:  # the groups compress at once: a small one's temp files come and go
        return False


def whole_groups_only(groups):
    """Nothing half-written in the cache's groups: each frame file there has its record, and each record its frame
    (the small SBOM group, compressed beside the big one, may finish before an interrupt)."""
    names = tree(groups)
    assert all(n.endswith((".zst", ".json")) for n in names), names
    assert sorted(n.rsplit(".", 1)[0] for n in names if n.endswith(".zst")) == sorted(
        n.rsplit(".", 1)[0] for n in names if n.endswith(".json")
    ), names
    return names


def test_ctrl_c_during_compression_exits_130_and_leaves_nothing(tmp_path, plain_stub):
    work, cache = big_project(tmp_path), tmp_path / "cache"
    proc = start_make(work, cache, plain_stub)
    wait_for_compression(proc, cache)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "bundler: error: interrupted; nothing was left half-written"
    assert "Traceback" not in err
    assert tree(cache / "tmp") == [] and len(whole_groups_only(cache / "groups")) <= 2  # the SBOM's at most
    assert tree(work / "dist") == []


def test_ctrl_c_while_two_groups_compress_at_once_exits_130_and_leaves_nothing(tmp_path, plain_stub):
    import shutil

    work, cache = big_project(tmp_path), tmp_path / "cache"
    shutil.copy(work / "big.bin", work / "more.bin")
    with open(work / "bundle.toml", "a") as manifest:
        manifest.write('\n[[file]]\npath = "more.bin"\nmode = "0644"\ngroup = "more"\nsource = { url = "more.bin" }\n')
    proc = start_make(work, cache, plain_stub)
    said = wait_for_compression(proc, cache, groups=2)  # both big groups have started
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = said + err
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "bundler: error: interrupted; nothing was left half-written"
    assert "Traceback" not in err
    assert tree(cache / "tmp") == [] and len(whole_groups_only(cache / "groups")) <= 2  # the SBOM's at most
    assert tree(work / "dist") == []


def test_temp_files_of_a_killed_make_are_removed_by_the_next_one(tmp_path, plain_stub, project):
    work, cache = big_project(tmp_path), tmp_path / "cache"
    proc = start_make(work, cache, plain_stub)
    wait_for_compression(proc, cache)
    proc.kill()
    proc.communicate(timeout=60)
    left = tree(cache / "tmp")
    assert left and all(f".tmp-{proc.pid}-" in name for name in left)
    small, _, _ = project
    make(small, cache, plain_stub, "-o", "app")  # another build sharing the cache
    assert tree(cache / "tmp") == []


def test_temp_files_a_killed_make_left_beside_its_output_are_removed_by_the_next(project, plain_stub):
    work, _, cache = project
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its PID is now that of a dead process
    (work / "dist").mkdir()
    left = work / "dist" / f".app.tmp-{child.pid}-abc"
    left.write_bytes(b"half an executable")
    for name in ("app.sha256", "app.part001", "app.spdx.json", "app.intoto.json"):  # the rest of the output set
        (work / "dist" / f".{name}.tmp-{child.pid}-abc").write_text("half")
    other = work / "dist" / f".notes.tmp-{child.pid}-abc"  # not this output's: not ours to judge
    other.write_text("x")
    (work / "dist" / "app.cdx.json").write_text("{}")  # an SBOM an earlier make wrote in the other format
    make(work, cache, plain_stub, "-o", "dist/app")
    assert sorted(os.listdir(work / "dist")) == [other.name, "app", "app.intoto.json", "app.sha256", "app.spdx.json"]


# bad output paths: one line, an exit code, nothing written


def assert_refused(result, code, *words):
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("bundler: error: ") and "Traceback" not in result.stderr
    for word in words:
        assert word in lines[-1]


def test_an_existing_directory_as_output_is_refused(project, plain_stub):
    work, _, cache = project
    (work / "dist").mkdir()
    assert_refused(make(work, cache, plain_stub, "-o", "dist", check=False), 2, "dist", "is a directory")
    assert tree(work / "dist") == []


@pytest.mark.parametrize("name", ["bundle.toml", "hello", "bundle.lock"])
def test_an_output_equal_to_an_input_is_refused(project, plain_stub, name):
    work, _, cache = project
    (work / "bundle.lock").write_text("")  # an input too, when it is there
    before = {p: sha256(work / p) for p in ("bundle.toml", "hello", "bundle.lock")}
    assert_refused(make(work, cache, plain_stub, "-o", name, check=False), 2, name, "input")
    assert {p: sha256(work / p) for p in before} == before
    assert sorted(os.listdir(work)) == ["bundle.lock", "bundle.toml", "hello"]


def test_an_output_whose_checksum_file_is_an_input_is_refused(project, plain_stub):
    work, _, cache = project
    os.rename(work / "hello", work / "hello.sha256")
    manifest = work / "bundle.toml"
    manifest.write_text(manifest.read_text().replace('url = "hello"', 'url = "hello.sha256"'))
    assert_refused(make(work, cache, plain_stub, "-o", "hello", check=False), 2, "hello.sha256")


def test_output_in_proc_is_an_environment_error(project, plain_stub):
    work, _, cache = project
    assert_refused(make(work, cache, plain_stub, "-o", "/proc/bundler-test", check=False), 4, "/proc/bundler-test")
    assert not os.path.exists("/proc/bundler-test")


def test_a_device_node_as_output_is_refused(project, plain_stub):
    work, _, cache = project
    assert_refused(make(work, cache, plain_stub, "-o", "/dev/null", check=False), 2, "/dev/null", "not a regular")
    assert Path("/dev/null").is_char_device()


def test_output_on_a_read_only_file_system_is_an_environment_error(project, plain_stub, read_only_tmpfs):
    work, _, cache = project
    result = make(work, cache, plain_stub, "-o", read_only_tmpfs / "app", check=False)
    assert_refused(result, 4, str(read_only_tmpfs / "app"), "Read-only file system")
    assert "compressing" not in result.stderr  # refused before the long part
    assert tree(read_only_tmpfs) == []


# one top-level handler


def test_an_unexpected_error_is_one_line_asking_for_a_report(project, monkeypatch):
    """A bug cannot be produced on demand by a real part, so one is planted: make's first step raises."""
    import bundler.build.make
    from bundler.cli import main

    def planted(*args, **kwargs):
        raise RuntimeError("planted bug")

    monkeypatch.setattr(bundler.build.make, "load_manifest", planted)
    result = CliRunner().invoke(main, ["make"], catch_exceptions=False)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "internal error: RuntimeError: planted bug" in lines[0] and "report" in lines[0]


def test_an_os_error_nobody_named_is_exit_4_not_a_traceback(project, plain_stub):
    work, _, cache = project
    (work / "hello").unlink()
    (work / "hello").mkdir()  # the local source is a directory now
    result = make(work, cache, plain_stub, "-o", "app", check=False)
    assert result.returncode in (2, 4) and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --json


def test_make_json_is_the_result_a_ci_reads(project, plain_stub):
    work, _, cache = project
    result = make(work, cache, plain_stub, "-o", "out/app", "--json")
    made = json.loads(result.stdout)
    assert made["sha256"] == sha256(work / "out" / "app")
    assert made["size"] == (work / "out" / "app").stat().st_size
    inspected = json.loads(bundler("inspect", work / "out" / "app", "--json").stdout)
    assert made["bundle_id"] == inspected["bundle_id"]
    assert (made["name"], made["version"], made["arch"]) == ("demo", "1.0.0", inspected["arch"])
    assert {g["name"] for g in made["groups"]} == {g["name"] for g in inspected["encoding"]["groups"]}
    assert made["sbom"] == str(Path("out/app.spdx.json")) and (work / made["sbom"]).is_file()
    assert made["provenance"] == str(Path("out/app.intoto.json")) and (work / made["provenance"]).is_file()


# progress: a bar on a terminal, nothing otherwise


def test_compression_and_download_draw_a_bar_on_a_terminal(project, plain_stub):
    work, server, cache = project
    cmd = [sys.executable, "-m", "bundler", "make", "--stub", str(plain_stub), "--cache-dir", str(cache), "-o", "app"]
    code, _, seen = run_on_a_terminal(cmd, work)
    assert code == 0, seen
    assert "group files" in seen and "100%" in seen and "\r" in seen
    assert "data.bin" in seen  # the download's bar


def test_no_bar_without_a_terminal(project, plain_stub):
    work, _, cache = project
    result = make(work, cache, plain_stub, "-o", "app")
    assert "\r" not in result.stderr and "%" not in result.stderr


# in-process


def test_make_in_process_writes_what_the_device_reads(tmp_path, plain_stub):
    from payload.layout import open_payload
    from payload.report import verify_payload
    from testing.bundles import make_bundle

    path, index = make_bundle(tmp_path, plain_stub)
    with open(path, "rb") as f:
        payload = open_payload(str(path), f)
        assert payload.index_bytes == index.to_bytes()
        verify_payload(payload, f, None, "--key")  # raises on any mismatch
    assert (tmp_path / (path.name + ".sha256")).read_text() == f"{sha256(path)}  {path.name}\n"
    again, _ = make_bundle(tmp_path, plain_stub)
    assert sha256(again) == sha256(path)  # same inputs, same bytes


def test_verify_json_for_a_ci(project, plain_stub):
    work, _, cache = project
    make(work, cache, plain_stub, "-o", "app")
    verified = json.loads(bundler("verify", work / "app", "--json").stdout)
    assert verified["ok"] is True and verified["report"]
    assert verified["bundle_id"] == json.loads(bundler("inspect", work / "app", "--json").stdout)["bundle_id"]
    flip_byte(work / "app", (work / "app").stat().st_size // 2)
    damaged = bundler("verify", work / "app", "--json", check=False)
    assert damaged.returncode == 3 and damaged.stdout == "" and "bundler: error:" in damaged.stderr

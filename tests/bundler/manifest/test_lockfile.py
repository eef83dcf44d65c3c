"""bundle.lock: deterministic round trip, atomic save, malformed locks named by line, and the pin rules."""

import os
import re
import textwrap
from pathlib import Path

import pytest
import tomllib

from bundler.manifest import load_manifest
from bundler.manifest.lockfile import Lock, check_stub_pin, image_pin_for, lock_path_for, pin_for
from payload.errors import HostError, IntegrityError, UsageError

SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_C = "c" * 64
DIGEST = "sha256:" + "d" * 64

MANIFEST = f"""\
[bundle]
name = "demo"
version = "1.0.0"
entrypoint = ["bin/hello"]

[[file]]
path = "bin/hello"
mode = "0755"
source = {{ url = "hello.sh" }}

[[file]]
path = "bin/crun"
mode = "0755"
[file.source.amd64]
url = "https://example.org/crun-amd64"
[file.source.arm64]
url = "https://example.org/crun-arm64"
sha256 = "{SHA_A}"

[[image]]
name = "pause"
ref = "registry.k8s.io/pause:3.10"
"""


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "bundle.toml"
    path.write_text(MANIFEST)
    return load_manifest(path)


def lock_error(tmp_path, text):
    path = tmp_path / "bundle.lock"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(UsageError) as caught:
        Lock.load(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}:")
    line, _, rest = message[len(f"{path}:") :].partition(": ")
    return int(line), rest


def test_lock_path_is_next_to_the_manifest(tmp_path):
    assert lock_path_for(tmp_path / "bundle.toml") == tmp_path / "bundle.lock"
    assert lock_path_for("examples/solo/bundle.toml").as_posix() == "examples/solo/bundle.lock"


def test_missing_lock_is_empty(tmp_path):
    lock = Lock.load(tmp_path / "bundle.lock")
    assert lock.files == [] and lock.images == []
    assert lock.file_sha256("bin/hello", "amd64", "hello.sh") is None
    assert lock.path == tmp_path / "bundle.lock"
    assert not (tmp_path / "bundle.lock").exists()


def test_round_trip_is_deterministic_and_sorted(tmp_path):
    lock = Lock()
    lock.set_file("bin/zeta", "riscv64", "https://example.org/z", SHA_C)
    lock.set_file("bin/alpha", "arm", "https://example.org/a-arm", SHA_B)
    lock.set_file("bin/alpha", "amd64", "https://example.org/a-amd64", SHA_A)
    lock.set_image("pause", "registry.k8s.io/pause:3.10", "linux/arm64", DIGEST)
    lock.set_image("coredns", "coredns/coredns:1.11", "linux/amd64", DIGEST)
    path = lock.save(tmp_path / "bundle.lock")
    text = path.read_text()

    # Read back with tomllib, not with Lock: the rows are sorted and complete.
    data = tomllib.loads(text)
    assert data["version"] == 1
    assert [(row["path"], row["arch"]) for row in data["file"]] == [
        ("bin/alpha", "amd64"),
        ("bin/alpha", "arm"),
        ("bin/zeta", "riscv64"),
    ]
    assert data["file"][1] == {"path": "bin/alpha", "arch": "arm", "url": "https://example.org/a-arm", "sha256": SHA_B}
    assert [(row["name"], row["platform"]) for row in data["image"]] == [
        ("coredns", "linux/amd64"),
        ("pause", "linux/arm64"),
    ]
    assert data["image"][1] == {
        "name": "pause",
        "ref": "registry.k8s.io/pause:3.10",
        "platform": "linux/arm64",
        "digest": DIGEST,
    }
    # Keys appear in the documented order in every row.
    assert re.findall(r"^(\w+) =", text.split("[[file]]", 1)[1].split("[[file]]")[0], re.MULTILINE) == [
        "path",
        "arch",
        "url",
        "sha256",
    ]
    assert re.findall(r"^(\w+) =", text.split("[[image]]", 1)[1].split("[[image]]")[0], re.MULTILINE) == [
        "name",
        "ref",
        "platform",
        "digest",
    ]
    assert text.startswith("# ")

    loaded = Lock.load(path)
    assert loaded.files == lock.files and loaded.images == lock.images
    assert loaded.file_sha256("bin/alpha", "arm", "https://example.org/a-arm") == SHA_B
    assert loaded.image_digest("pause", "registry.k8s.io/pause:3.10", "linux/arm64") == DIGEST
    # Same content in another insertion order: the same bytes.
    again = Lock()
    for pin in reversed(loaded.files):
        again.set_file(pin.path, pin.arch, pin.url, pin.sha256)
    for pin in reversed(loaded.images):
        again.set_image(pin.name, pin.ref, pin.platform, pin.digest)
    assert again.save(tmp_path / "again.lock").read_bytes() == path.read_bytes()


def test_a_changed_url_or_ref_invalidates_the_pin():
    lock = Lock()
    lock.set_file("bin/crun", "amd64", "https://example.org/crun-1.25", SHA_A)
    assert lock.file_sha256("bin/crun", "amd64", "https://example.org/crun-1.25") == SHA_A
    assert lock.file_sha256("bin/crun", "amd64", "https://example.org/crun-1.26") is None
    assert lock.file_sha256("bin/crun", "arm64", "https://example.org/crun-1.25") is None
    lock.set_image("pause", "registry.k8s.io/pause:3.9", "linux/amd64", DIGEST)
    assert lock.image_digest("pause", "registry.k8s.io/pause:3.10", "linux/amd64") is None
    assert lock.image_digest("pause", "registry.k8s.io/pause:3.9", "linux/arm64") is None
    # Setting the new url replaces the row instead of adding a second one.
    lock.set_file("bin/crun", "amd64", "https://example.org/crun-1.26", SHA_B)
    assert [(pin.url, pin.sha256) for pin in lock.files] == [("https://example.org/crun-1.26", SHA_B)]


def test_set_rejects_malformed_values():
    lock = Lock()
    with pytest.raises(ValueError):
        lock.set_file("bin/x", "x86_64", "u", SHA_A)
    with pytest.raises(ValueError):
        lock.set_file("bin/x", "amd64", "u", "ABC")
    with pytest.raises(ValueError):
        lock.set_image("pause", "pause:3.10", "linux/amd64", "d" * 64)


def test_save_replaces_the_file_atomically(tmp_path):
    path = tmp_path / "bundle.lock"
    path.write_text("old\n")
    old_inode = os.stat(path).st_ino
    lock = Lock(path)
    lock.set_file("bin/x", "amd64", "u", SHA_A)
    lock.save()
    assert os.stat(path).st_ino != old_inode  # renamed into place, not rewritten in place
    assert os.listdir(tmp_path) == ["bundle.lock"]
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o644)
    assert tomllib.loads(path.read_text())["file"][0]["sha256"] == SHA_A


def test_failed_save_leaves_no_temporary_file(tmp_path):
    # A directory where the lock should go makes the final rename fail for real, even as root.
    (tmp_path / "bundle.lock").mkdir()
    (tmp_path / "bundle.lock" / "keep").write_text("x")
    lock = Lock()
    lock.set_file("bin/x", "amd64", "u", SHA_A)
    with pytest.raises(HostError, match=r"bundle.lock: cannot write the lock file \(.*\); check free space"):
        lock.save(tmp_path / "bundle.lock")
    assert sorted(os.listdir(tmp_path)) == ["bundle.lock"]


BAD_LOCKS = {
    "syntax": ('version = 1\n[[file]]\npath = "x\n', 3, "invalid TOML"),
    "unknown key": (
        f'version = 1\n[[file]]\npath = "x"\narch = "amd64"\nurl = "u"\nsha256 = "{SHA_A}"\nsize = 3\n',
        7,
        "unknown key 'size' in [[file]]; run `bundler lock` to write it again",
    ),
    "bad sha256": (
        'version = 1\n\n[[file]]\npath = "x"\narch = "amd64"\nurl = "u"\nsha256 = "xyz"\n',
        7,
        "sha256 is not 64 lower-case hex digits",
    ),
    "missing url": (
        f'version = 1\n[[file]]\npath = "x"\narch = "amd64"\nsha256 = "{SHA_A}"\n',
        2,
        "'url' in [[file]] is missing",
    ),
    "bad arch": (
        f'version = 1\n[[file]]\npath = "x"\narch = "x86_64"\nurl = "u"\nsha256 = "{SHA_A}"\n',
        4,
        "unknown architecture 'x86_64'",
    ),
    "duplicate row": (
        f'version = 1\n[[file]]\npath = "x"\narch = "arm"\nurl = "u"\nsha256 = "{SHA_A}"\n'
        f'[[file]]\npath = "x"\narch = "arm"\nurl = "v"\nsha256 = "{SHA_B}"\n',
        7,
        "'x' for arch 'arm' is pinned twice (first at line 2)",
    ),
    "bad digest": (
        'version = 1\n[[image]]\nname = "p"\nref = "p:1"\nplatform = "linux/amd64"\ndigest = "sha256:12"\n',
        6,
        "digest is not sha256:<64 hex digits>",
    ),
    "newer format": ("version = 2\n", 1, "lock format 2 is newer than this bundler knows; upgrade bundler"),
    "file not an array": ('version = 1\n[file]\npath = "x"\n', 2, "'file' must be an array of tables"),
    "bad stub arch": (f'version = 1\n[[stub]]\narch = "x86_64"\nstub_sha256 = "{SHA_A}"\n', 3, "unknown architecture"),
    "bad stub sha256": (
        'version = 1\n[[stub]]\narch = "amd64"\nstub_sha256 = "A1"\n',
        4,
        "stub_sha256 is not 64 lower-case hex digits",
    ),
    "stub pinned twice": (
        f'version = 1\n[[stub]]\narch = "arm"\nstub_sha256 = "{SHA_A}"\n'
        f'[[stub]]\narch = "arm"\nstub_sha256 = "{SHA_B}"\n',
        5,
        "the stub for arch 'arm' is pinned twice (first at line 2)",
    ),
}


@pytest.mark.parametrize("text, line, fragment", BAD_LOCKS.values(), ids=BAD_LOCKS.keys())
def test_malformed_lock_names_the_line(tmp_path, text, line, fragment):
    got_line, rest = lock_error(tmp_path, text)
    assert (got_line, fragment in rest) == (line, True), rest


# -- pin rules ------------------------------------------------------------------------------------------------


def test_pin_comes_from_the_manifest_then_the_lock_then_nowhere(manifest):
    crun = manifest.file("bin/crun")
    hello = manifest.file("bin/hello")
    lock = Lock()
    assert pin_for(manifest, lock, crun, "arm64", locked=True) == SHA_A  # the manifest's own sha256
    assert pin_for(manifest, lock, crun, "amd64", locked=False) is None
    lock.set_file("bin/crun", "amd64", "https://example.org/crun-amd64", SHA_B)
    lock.set_file("bin/crun", "arm64", "https://example.org/crun-arm64", SHA_A)
    lock.set_file("bin/hello", "riscv64", "hello.sh", SHA_C)  # the url as written in the manifest
    assert pin_for(manifest, lock, crun, "amd64", locked=True) == SHA_B
    assert pin_for(manifest, lock, crun, "arm64", locked=True) == SHA_A  # both agree
    assert pin_for(manifest, lock, hello, "riscv64", locked=True) == SHA_C
    assert pin_for(manifest, lock, hello, "amd64", locked=False) is None


def test_locked_refuses_what_is_not_pinned(manifest):
    hello = manifest.file("bin/hello")
    lock = Lock()
    lock.set_file("bin/hello", "amd64", "old-hello.sh", SHA_C)  # pinned for another url: does not count
    with pytest.raises(UsageError) as caught:
        pin_for(manifest, lock, hello, "amd64", locked=True)
    assert str(caught.value) == (
        f"{manifest.path}:7: file 'bin/hello' for arch 'amd64' is not pinned; "
        "run `bundler lock` (or add its sha256 to the manifest)"
    )


def test_manifest_and_lock_disagreeing_is_an_integrity_error_naming_both(manifest, tmp_path):
    lock = Lock()
    lock.set_file("bin/crun", "arm64", "https://example.org/crun-arm64", SHA_B)
    lock.save(tmp_path / "bundle.lock")
    lock = Lock.load(tmp_path / "bundle.lock")
    with pytest.raises(IntegrityError) as caught:
        pin_for(manifest, lock, manifest.file("bin/crun"), "arm64", locked=False)
    message = str(caught.value)
    lock_line = tmp_path.joinpath("bundle.lock").read_text().split("\n").index("[[file]]") + 1
    manifest_line = MANIFEST.split("\n").index('url = "https://example.org/crun-arm64"') + 1
    assert message.startswith(
        f"{tmp_path / 'bundle.lock'}:{lock_line}: 'bin/crun' for arch 'arm64' is pinned to sha256 {SHA_B}"
    )
    assert f"but {manifest.path}:{manifest_line} says {SHA_A}; " in message
    assert caught.value.exit_code == 3


def test_missing_architecture_wins_over_pinning(manifest):
    with pytest.raises(UsageError, match="file 'bin/crun' has no source for arch 'arm'"):
        pin_for(manifest, Lock(), manifest.file("bin/crun"), "arm", locked=True)


def test_image_pins(manifest):
    pause = manifest.image("pause")
    lock = Lock()
    assert image_pin_for(manifest, lock, pause, "arm64", locked=False) is None
    with pytest.raises(UsageError, match=r":21: image 'pause' for linux/arm/v7 is not pinned; run `bundler lock`"):
        image_pin_for(manifest, lock, pause, "arm", locked=True)
    lock.set_image("pause", "registry.k8s.io/pause:3.10", "linux/arm/v7", DIGEST)
    assert image_pin_for(manifest, lock, pause, "arm", locked=True) == DIGEST


def test_prune_drops_rows_the_manifest_no_longer_explains(manifest):
    lock = Lock()
    lock.set_file("bin/crun", "amd64", "https://example.org/crun-amd64", SHA_A)  # kept
    lock.set_file("bin/crun", "arm64", "https://example.org/crun-arm64-old", SHA_A)  # url changed
    lock.set_file("bin/crun", "arm", "https://example.org/crun-arm", SHA_A)  # no arm source any more
    lock.set_file("bin/gone", "amd64", "gone", SHA_A)  # file removed
    lock.set_file("bin/hello", "riscv64", "hello.sh", SHA_A)  # kept
    lock.set_image("pause", "registry.k8s.io/pause:3.10", "linux/riscv64", DIGEST)  # kept
    lock.set_image("pause", "registry.k8s.io/pause:3.9", "linux/amd64", DIGEST)  # ref changed
    lock.set_image("pause", "registry.k8s.io/pause:3.10", "linux/s390x", DIGEST)  # platform not built
    lock.set_image("old", "old:1", "linux/amd64", DIGEST)  # image removed
    assert lock.prune(manifest) == 6
    assert [(pin.path, pin.arch) for pin in lock.files] == [("bin/crun", "amd64"), ("bin/hello", "riscv64")]
    assert [(pin.name, pin.platform) for pin in lock.images] == [("pause", "linux/riscv64")]


def test_the_documented_lock_loads(tmp_path):
    docs = Path(__file__).resolve().parents[3] / "docs" / "manifest.md"
    example = docs.read_text().split("## `bundle.lock`", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "bundle.lock"
    path.write_text(example)
    lock = Lock.load(path)
    assert [(pin.path, pin.arch) for pin in lock.files] == [("bin/crun", "amd64")]
    assert [(pin.name, pin.platform) for pin in lock.images] == [("pause", "linux/arm64")]


def test_stub_pins_round_trip_sorted_by_architecture(tmp_path):
    lock = Lock()
    lock.set_stub("riscv64", SHA_C)
    lock.set_stub("amd64", SHA_A)
    lock.set_stub("amd64", SHA_B)  # pinned afresh: the last stub wins
    path = lock.save(tmp_path / "bundle.lock")
    assert tomllib.loads(path.read_text())["stub"] == [
        {"arch": "amd64", "stub_sha256": SHA_B},
        {"arch": "riscv64", "stub_sha256": SHA_C},
    ]
    loaded = Lock.load(path)
    assert loaded.stubs == lock.stubs and loaded.stub_pin("arm") is None
    with pytest.raises(ValueError):
        lock.set_stub("amd64", "B" * 64)


def test_locked_make_refuses_another_stub_naming_both_digests(tmp_path):
    lock = Lock()
    lock.set_stub("amd64", SHA_A)
    lock.save(tmp_path / "bundle.lock")
    lock = Lock.load(tmp_path / "bundle.lock")
    check_stub_pin(lock, "amd64", Path("stub"), SHA_A)  # the pinned stub
    check_stub_pin(lock, "arm64", Path("stub"), SHA_B)  # no pin for arm64: any stub
    with pytest.raises(IntegrityError) as caught:
        check_stub_pin(lock, "amd64", Path("/cache/stub"), SHA_B)
    message = str(caught.value)
    line = tmp_path.joinpath("bundle.lock").read_text().split("\n").index("[[stub]]") + 1
    assert message.startswith(
        f"{tmp_path / 'bundle.lock'}:{line}: the amd64 stub is pinned to stub_sha256 {SHA_A}, "
        f"but /cache/stub has {SHA_B}; "
    )
    assert "\n" not in message and "bundler lock --arch amd64 --stubs" in message
    assert caught.value.exit_code == 3

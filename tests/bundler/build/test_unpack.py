import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from bundler.build.unpack import extract_cached, extract_member
from bundler.cache import Cache
from payload.errors import HostError, IntegrityError, UsageError

CRUN = os.urandom(150_000)
README = b"read me\n" * 100


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256sum(path) -> str:
    return subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o755
    tar.addfile(info, io.BytesIO(data))


def add_link(tar: tarfile.TarFile, name: str, target: str, kind=tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    tar.addfile(info)


def add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def release_tar(path: Path, mode: str = "w", prefix: str = "") -> Path:
    """A release-like tarball: one top-level directory, a file, a symlink and a hard link."""
    with tarfile.open(path, mode) as tar:
        add_dir(tar, f"{prefix}crun-1.26")
        add_file(tar, f"{prefix}crun-1.26/crun", CRUN)
        add_file(tar, f"{prefix}crun-1.26/README.md", README)
        add_link(tar, f"{prefix}crun-1.26/bin-crun", "crun")
        add_link(tar, f"{prefix}crun-1.26/hard-crun", f"{prefix}crun-1.26/crun", tarfile.LNKTYPE)
        add_link(tar, f"{prefix}crun-1.26/chain", "bin-crun")
        add_link(tar, f"{prefix}crun-1.26/escape", "../../etc/passwd")
        add_link(tar, f"{prefix}crun-1.26/absolute", "/etc/passwd")
        add_link(tar, f"{prefix}crun-1.26/dangling", "nothing-here")
        add_link(tar, f"{prefix}crun-1.26/loop-a", "loop-b")
        add_link(tar, f"{prefix}crun-1.26/loop-b", "loop-a")
    return path


def release_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("crun-1.26/", b"")
        zf.writestr("crun-1.26/crun", CRUN)
        zf.writestr("crun-1.26/README.md", README)
        link = zipfile.ZipInfo("crun-1.26/bin-crun")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, b"crun")
        escape = zipfile.ZipInfo("crun-1.26/escape")
        escape.external_attr = 0o120777 << 16
        zf.writestr(escape, b"../../etc/passwd")
    return path


def zstd_tar(tmp_path: Path) -> Path:
    plain = release_tar(tmp_path / "release.tar")
    subprocess.run(["zstd", "-q", "-19", "--long=27", str(plain), "-o", str(tmp_path / "release.tar.zst")], check=True)
    return tmp_path / "release.tar.zst"


ARCHIVES = {
    "tar.gz": lambda d: release_tar(d / "release.tar.gz", "w:gz"),
    "tgz": lambda d: release_tar(d / "release.tgz", "w:gz"),
    "tar.xz": lambda d: release_tar(d / "release.tar.xz", "w:xz"),
    "tar.bz2": lambda d: release_tar(d / "release.tar.bz2", "w:bz2"),
    "tar": lambda d: release_tar(d / "release.tar"),
    "tar.zst": zstd_tar,
    "zip": lambda d: release_zip(d / "release.zip"),
}


@pytest.fixture(params=sorted(ARCHIVES))
def archive(request, tmp_path):
    return ARCHIVES[request.param](tmp_path)


def test_extracts_the_member_bytes(archive, tmp_path):
    dest = extract_member(archive, "crun-1.26/crun", tmp_path / "crun")
    assert dest == tmp_path / "crun"
    assert sha256sum(dest) == sha(CRUN)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_member_may_start_with_dot_slash(archive, tmp_path):
    assert sha256sum(extract_member(archive, "./crun-1.26/README.md", tmp_path / "readme")) == sha(README)


def test_archive_names_with_dot_slash_match_plain_names(tmp_path):
    archive = release_tar(tmp_path / "dotted.tar.gz", "w:gz", prefix="./")
    assert sha256sum(extract_member(archive, "crun-1.26/crun", tmp_path / "a")) == sha(CRUN)
    assert sha256sum(extract_member(archive, "./crun-1.26/crun", tmp_path / "b")) == sha(CRUN)


def test_format_comes_from_the_bytes_not_the_name(archive, tmp_path):
    nameless = tmp_path / "0123abcd"
    shutil.copyfile(archive, nameless)
    assert sha256sum(extract_member(nameless, "crun-1.26/crun", tmp_path / "crun")) == sha(CRUN)


def test_top_level_directory_is_not_skipped(archive, tmp_path):
    with pytest.raises(UsageError) as err:
        extract_member(archive, "crun", tmp_path / "crun", archive_name="crun-1.26.tar.gz")
    message = str(err.value)
    assert "crun-1.26.tar.gz has no member 'crun'" in message
    assert "crun-1.26/crun" in message and "bundle.toml" in message
    assert not (tmp_path / "crun").exists()


def test_missing_member_lists_close_names(archive, tmp_path):
    with pytest.raises(UsageError, match="close names: .*crun-1.26/README.md"):
        extract_member(archive, "crun-1.26/READMEE.md", tmp_path / "x")


def test_missing_member_in_an_unrelated_archive_names_some_files(archive, tmp_path):
    with pytest.raises(UsageError, match="it holds .* files, such as"):
        extract_member(archive, "zzzzzzzzzzzzzzzzzzzzzzzzzzz", tmp_path / "x")


def test_symlink_is_followed_inside_the_archive(archive, tmp_path):
    assert sha256sum(extract_member(archive, "crun-1.26/bin-crun", tmp_path / "crun")) == sha(CRUN)


def test_symlink_leaving_the_archive_is_refused(archive, tmp_path):
    with pytest.raises(UsageError, match="outside the archive"):
        extract_member(archive, "crun-1.26/escape", tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.zst"])
def test_tar_links(fmt, tmp_path):
    archive = ARCHIVES[fmt](tmp_path)
    assert sha256sum(extract_member(archive, "crun-1.26/hard-crun", tmp_path / "hard")) == sha(CRUN)
    assert sha256sum(extract_member(archive, "crun-1.26/chain", tmp_path / "chain")) == sha(CRUN)
    with pytest.raises(UsageError, match="outside the archive"):
        extract_member(archive, "crun-1.26/absolute", tmp_path / "x")
    with pytest.raises(UsageError, match="not in the archive"):
        extract_member(archive, "crun-1.26/dangling", tmp_path / "x")
    with pytest.raises(UsageError, match="loop"):
        extract_member(archive, "crun-1.26/loop-a", tmp_path / "x")


def test_later_entry_of_the_same_name_wins(tmp_path):
    archive = tmp_path / "twice.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_file(tar, "bin/tool", b"old")
        add_file(tar, "bin/tool", b"new")
    assert extract_member(archive, "bin/tool", tmp_path / "tool").read_bytes() == b"new"


def test_directory_member_is_refused(archive, tmp_path):
    with pytest.raises(UsageError, match="is a directory"):
        extract_member(archive, "crun-1.26/", tmp_path / "x")


def test_not_an_archive(tmp_path):
    plain = tmp_path / "crun"
    plain.write_bytes(CRUN)
    with pytest.raises(UsageError, match="not a .tar"):
        extract_member(plain, "crun", tmp_path / "x")


def test_truncated_archive_is_an_integrity_error(tmp_path):
    archive = release_tar(tmp_path / "release.tar.xz", "w:xz")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(IntegrityError, match="damaged"):
        extract_member(archive, "crun-1.26/README.md", tmp_path / "x")
    assert not (tmp_path / "x").exists()


# cached extraction


@pytest.fixture
def cache(tmp_path):
    return Cache(tmp_path / "cache")


def test_extract_cached_returns_a_blob_named_by_the_member_sha256(cache, tmp_path):
    archive_sha = cache.put_file(release_tar(tmp_path / "r.tar.gz", "w:gz"))
    path = extract_cached(cache, archive_sha, "crun-1.26/crun")
    assert path == cache.blob_path(sha(CRUN))
    assert sha256sum(path) == sha(CRUN)


def test_extract_cached_extracts_once(cache, tmp_path):
    archive_sha = cache.put_file(zstd_tar(tmp_path))
    first = extract_cached(cache, archive_sha, "crun-1.26/crun")
    cache.blob_path(archive_sha).unlink()  # a second extraction would now fail
    assert extract_cached(cache, archive_sha, "./crun-1.26/crun") == first
    with pytest.raises(UsageError, match="not in the cache"):
        extract_cached(cache, archive_sha, "crun-1.26/README.md")


def test_extract_cached_keys_by_archive_and_member(cache, tmp_path):
    one = cache.put_file(release_tar(tmp_path / "one.tar", "w"))
    two_path = tmp_path / "two.tar"
    with tarfile.open(two_path, "w") as tar:
        add_file(tar, "crun-1.26/crun", b"another crun")
    two = cache.put_file(two_path)
    assert sha256sum(extract_cached(cache, one, "crun-1.26/crun")) == sha(CRUN)
    assert sha256sum(extract_cached(cache, two, "crun-1.26/crun")) == sha(b"another crun")
    assert sha256sum(extract_cached(cache, one, "crun-1.26/README.md")) == sha(README)


def test_extract_cached_leaves_nothing_on_a_missing_member(cache, tmp_path):
    archive_sha = cache.put_file(release_zip(tmp_path / "r.zip"))
    with pytest.raises(UsageError):
        extract_cached(cache, archive_sha, "crun")
    blobs = sorted(p.name for p in (cache.root / "blobs" / "sha256").iterdir())
    assert blobs == [archive_sha]
    assert list((cache.root / "tmp").iterdir()) == []


def test_zstd_archive_of_several_frames(tmp_path):
    """pzstd and `cat a.zst b.zst` write several frames; the member sits in the second one here."""
    plain = tmp_path / "two.tar"
    with tarfile.open(plain, "w") as tar:
        add_file(tar, "first", os.urandom(100_000))
        add_file(tar, "second", CRUN)
    data = plain.read_bytes()
    (tmp_path / "p1").write_bytes(data[:50_000])
    (tmp_path / "p2").write_bytes(data[50_000:])
    for part in ("p1", "p2"):
        subprocess.run(["zstd", "-q", str(tmp_path / part)], check=True)
    archive = tmp_path / "two.tar.zst"
    archive.write_bytes((tmp_path / "p1.zst").read_bytes() + (tmp_path / "p2.zst").read_bytes())
    assert sha256sum(extract_member(archive, "second", tmp_path / "out")) == sha(CRUN)


def test_full_disk_while_extracting_is_a_host_error(tmp_path, tiny_tmpfs):
    """A real 1 MiB tmpfs; the member is 2 MB of random bytes, so it cannot fit."""
    archive = tmp_path / "big.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_file(tar, "big", os.urandom(2_000_000))
    with pytest.raises(HostError, match="no space"):
        extract_member(archive, "big", tiny_tmpfs / "big")
    assert list(tiny_tmpfs.iterdir()) == []

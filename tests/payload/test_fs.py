"""payload/fs: atomic file, atomic directory, symlink swap, quiet removal, dead temp files."""

import errno
import os
import stat
import subprocess
import sys

import pytest

from payload import fs


class Boom(Exception):
    pass


def names(directory):
    return sorted(os.listdir(directory))


def test_atomic_file_appears_whole_with_the_umask_mode(tmp_path):
    target = tmp_path / "out.txt"
    with fs.atomic_file(target, binary=False) as out:
        out.write("hello\n")
        assert not target.exists()  # nothing visible before the block ends
    assert target.read_text() == "hello\n"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert names(tmp_path) == ["out.txt"]


def test_a_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(Boom):
        with fs.atomic_file(target) as out:
            out.write(b"new, half written")
            raise Boom()
    assert target.read_bytes() == b"old"
    assert names(tmp_path) == ["out.bin"]


def test_a_disk_that_fills_up_on_the_last_flush_keeps_the_old_file(tiny_tmpfs):
    """A real full file system: the few bytes written stay in the file object's buffer, so the failure comes from
    the flush at close, after the block itself ended without an exception."""
    target = tiny_tmpfs / "out.bin"
    target.write_bytes(b"old")
    filler = os.open(tiny_tmpfs / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(OSError) as full:
            while True:
                os.write(filler, b"\0" * 4096)
    finally:
        os.close(filler)
    assert full.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as late:
        with fs.atomic_file(target) as out:
            out.write(b"new")
    assert late.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old"
    assert names(tiny_tmpfs) == ["filler", "out.bin"]


def test_keyboard_interrupt_leaves_no_temp(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with fs.atomic_path(tmp_path / "x", mode=0o755) as temp:
            with open(temp, "wb") as out:
                out.write(b"x")
            raise KeyboardInterrupt()
    assert names(tmp_path) == []


def test_atomic_path_gives_a_tool_a_name_and_sets_the_mode(tmp_path):
    target = tmp_path / "tool-output"
    with fs.atomic_path(target, mode=0o755) as temp:
        assert os.path.dirname(temp) == str(tmp_path)
        assert fs.temp_pid(temp) == os.getpid()
        with open(temp, "wb") as out:
            out.write(b"#!/bin/sh\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert names(tmp_path) == ["tool-output"]


def test_temp_dir_keeps_the_temp_elsewhere_on_the_same_file_system(tmp_path):
    (tmp_path / "tmp").mkdir()
    (tmp_path / "store").mkdir()
    seen = []
    with fs.atomic_file(tmp_path / "store" / "entry", temp_dir=tmp_path / "tmp") as out:
        seen = names(tmp_path / "tmp")
        out.write(b"data")
    assert len(seen) == 1 and seen[0].startswith(".entry" + fs.TEMP_MARK)
    assert names(tmp_path / "tmp") == []
    assert (tmp_path / "store" / "entry").read_bytes() == b"data"


def test_write_atomic_takes_bytes_or_text(tmp_path):
    fs.write_atomic(tmp_path / "a", b"\x00\x01")
    fs.write_atomic(tmp_path / "b", "text", mode=0o600)
    assert (tmp_path / "a").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b").read_text() == "text"
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o600


def test_atomic_directory_appears_complete_or_not_at_all(tmp_path):
    target = tmp_path / "version"
    with fs.atomic_directory(target) as work:
        os.makedirs(os.path.join(work, "bin"))
        with open(os.path.join(work, "bin", "tool"), "w") as out:
            out.write("x")
        assert not target.exists()
    assert (target / "bin" / "tool").read_text() == "x"
    with pytest.raises(Boom):
        with fs.atomic_directory(tmp_path / "other") as work:
            with open(os.path.join(work, "file"), "w") as out:
                out.write("partial")
            raise Boom()
    assert names(tmp_path) == ["version"]


def test_replace_symlink_swaps_and_cleans_a_temp_left_by_a_crash(tmp_path):
    link = tmp_path / "current"
    fs.replace_symlink("v1", str(link))
    assert os.readlink(link) == "v1"
    # the temp name a killed swap of this process would have left
    os.symlink("stale", str(tmp_path / (".current" + fs.TEMP_MARK + f"{os.getpid()}-link")))
    fs.replace_symlink("v2", str(link))
    assert os.readlink(link) == "v2"
    assert names(tmp_path) == ["current"]


def test_safe_removal_swallows_only_a_missing_name(tmp_path):
    fs.safe_unlink(tmp_path / "missing")
    fs.safe_rmtree(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError) as raised:
        fs.safe_unlink(tmp_path / "file" / "below")  # a file is not a directory: a real error, raised
    assert raised.value.errno == errno.ENOTDIR
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError) as raised:
        fs.safe_unlink(tmp_path / "dir")
    assert raised.value.errno in (errno.EISDIR, errno.EPERM)
    (tmp_path / "dir" / "inner").mkdir()
    fs.safe_rmtree(tmp_path / "dir")
    fs.safe_rmtree(tmp_path / "file")
    assert names(tmp_path) == []


def test_safe_rmtree_removes_a_symlink_not_its_target(tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "keep").write_text("x")
    os.symlink("target", str(tmp_path / "link"))
    fs.safe_rmtree(tmp_path / "link")
    assert names(tmp_path) == ["target"]
    assert (tmp_path / "target" / "keep").exists()


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_remove_dead_temps_keeps_those_of_live_processes(tmp_path):
    dead = dead_pid()
    mine = fs.temp_name(tmp_path / "blob")
    (tmp_path / (".blob" + fs.TEMP_MARK + f"{dead}-abc")).write_text("left by a killed build")
    (tmp_path / (".work" + fs.TEMP_MARK + f"{dead}-def")).mkdir()
    (tmp_path / (".pulled" + fs.TEMP_MARK + "1-ghi")).write_text("pid 1 lives")
    (tmp_path / "not-a-temp").write_text("x")
    removed = fs.remove_dead_temps(tmp_path)
    assert sorted(removed) == sorted([f".blob.tmp-{dead}-abc", f".work.tmp-{dead}-def"])
    assert names(tmp_path) == sorted([os.path.basename(mine), ".pulled.tmp-1-ghi", "not-a-temp"])


def test_temp_pid_reads_only_names_made_here():
    assert fs.temp_pid(".x.tmp-123-abcd") == 123
    assert fs.temp_pid("/a/b/.x.tar.tmp-7-link") == 7
    assert fs.temp_pid("x.tmp") is None
    assert fs.temp_pid(".x.tmp-abc") is None


def test_remove_dead_temps_can_keep_to_one_target(tmp_path):
    dead = dead_pid()
    (tmp_path / f".app.tmp-{dead}-x").write_text("x")
    (tmp_path / f".other.tmp-{dead}-x").write_text("x")
    assert fs.remove_dead_temps(tmp_path, prefix=".app.tmp-") == [f".app.tmp-{dead}-x"]
    assert names(tmp_path) == [f".other.tmp-{dead}-x"]


def test_link_or_copy_links_on_one_file_system_and_copies_across(tmp_path, tiny_tmpfs):
    """Within one file system the target is the source's inode; across two (a real tmpfs: the kernel refuses the
    link with EXDEV) it is a copy of the same bytes and mode, and no temp file is left in either place."""
    source = tmp_path / "source"
    source.write_bytes(b"runtime\n" * 100)
    source.chmod(0o750)
    linked = tmp_path / "linked"
    fs.link_or_copy(str(source), str(linked))
    assert linked.stat().st_ino == source.stat().st_ino
    copied = tiny_tmpfs / "copied"
    fs.link_or_copy(str(source), str(copied))
    assert copied.stat().st_ino != source.stat().st_ino
    assert copied.read_bytes() == source.read_bytes()
    assert stat.S_IMODE(copied.stat().st_mode) == 0o750
    assert names(tmp_path) == ["linked", "source", "tiny"]
    assert names(tiny_tmpfs) == ["copied"]


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_safe_mkdir_gives_exactly_the_mode_under_any_umask(tmp_path, umask):
    """Under umask 000 (some init systems and containers) or 077, every directory made, parents included, has
    exactly the mode asked for; one that exists keeps its own mode."""
    existing = tmp_path / "a"
    existing.mkdir()
    existing.chmod(0o700)
    previous = os.umask(umask)
    try:
        fs.safe_mkdir(str(existing / "b" / "c"))
        fs.safe_mkdir(str(tmp_path / "x"), 0o750)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(existing.stat().st_mode) == 0o700
    assert stat.S_IMODE((existing / "b").stat().st_mode) == 0o755
    assert stat.S_IMODE((existing / "b" / "c").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o750

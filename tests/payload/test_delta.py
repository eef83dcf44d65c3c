"""Deltas with the real shim of two Debian containerd releases: made (bundler/fleet/delta.py), applied against an
installed old version (payload/delta.py), and checked against the package's own md5sums."""

import hashlib
import shutil
import subprocess

import pytest
import zstandard

from bundler.build.cuts import DEFAULT_LEVEL
from bundler.fleet.delta import make_patch, read_files
from payload import delta, groups
from payload.errors import UsageError
from payload.index import Entry
from testing import containerd

INSTALLED = "bin/containerd-shim-runc-v2"  # where the shim lands in a version directory


def _md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def _entry(path):
    data = open(path, "rb").read()
    return Entry(INSTALLED, "file", 0o755, len(data), hashlib.sha256(data).hexdigest(), "shim", 0)


@pytest.fixture(scope="session")
def shim(tmp_path_factory):
    """An installed old shim, the new shim's frame as `bundler make` writes it (its default level), and a patch."""
    old, new = containerd.release(containerd.OLD), containerd.release(containerd.NEW)
    work = tmp_path_factory.mktemp("shim-delta")
    old_dir = work / "old-version"
    (old_dir / "bin").mkdir(parents=True)
    shutil.copy(old.path(containerd.SHIM), old_dir / INSTALLED)
    frame = work / "new.frame"
    with open(frame, "wb") as out:
        _, frame_sha, frame_csize = groups.compress_frame([new.path(containerd.SHIM)], out, DEFAULT_LEVEL)
    patch_path = work / "shim.patch"
    with open(patch_path, "wb") as out:
        made = make_patch(read_files([old.path(containerd.SHIM)]), [new.path(containerd.SHIM)], out)
    reference = read_files([old.path(containerd.SHIM)])
    record = delta.Patch(
        "shim",
        0,
        "a" * 64,
        delta.reference_sha256(reference),
        frame_sha,
        frame_csize,
        made.target_size,
        made.reference_size,
        made.window_log,
        made.memory,
    )
    return {
        "old": old,
        "new": new,
        "old_dir": old_dir,
        "frame": frame,
        "patch": patch_path,
        "made": made,
        "record": record,
        "old_entries": [_entry(old_dir / INSTALLED)],
        "new_entries": [_entry(new.path(containerd.SHIM))],
    }


def _apply(shim, tmp_path, record=None, patch=None, old_dir=None, bound=delta.DEFAULT_MEMORY):
    out = tmp_path / "out.frame"
    work = tmp_path / "decoded"
    work.mkdir(exist_ok=True)
    found = delta.apply(
        delta.Patch.from_annotations((record or shim["record"]).to_annotations()),
        str(patch or shim["patch"]),
        str(old_dir or shim["old_dir"]),
        shim["old_entries"],
        shim["new_entries"],
        str(work),
        str(out),
        bound,
    )
    return out, work, found


def test_shim_patch_gives_the_signed_frame_and_the_packaged_shim(shim, tmp_path):
    made = shim["made"]
    assert made.size < 4096, f"a security release of the shim should patch in a few KB, not {made.size} bytes"
    assert made.memory == delta.decode_memory(made.reference_size, made.window_log, made.target_size)
    out, work, (sha256, csize) = _apply(shim, tmp_path)
    packaged = shim["new"].md5sums[containerd.SHIM]  # from the .deb's control member, not from us
    assert _md5(work / INSTALLED) == packaged
    # Encoded again here at the fast level, not the publisher's 19: other bytes, the same content.
    written = open(out, "rb").read()
    assert (hashlib.sha256(written).hexdigest(), len(written)) == (sha256, csize)
    assert written != open(shim["frame"], "rb").read()
    params = subprocess.run(["zstd", "-lv", str(out)], check=True, capture_output=True, text=True).stdout
    assert "Decompressed Size" in params
    decoded = subprocess.run(["zstd", "-dc", str(out)], check=True, capture_output=True).stdout
    assert hashlib.md5(decoded).hexdigest() == packaged
    assert packaged != shim["old"].md5sums[containerd.SHIM]


def test_a_corrupted_patch_is_not_used(shim, tmp_path):
    data = bytearray(open(shim["patch"], "rb").read())
    data[len(data) // 2] ^= 0xFF
    broken = tmp_path / "broken.patch"
    broken.write_bytes(bytes(data))
    with pytest.raises(delta.DeltaUnusable) as caught:
        _apply(shim, tmp_path, patch=broken)
    assert "does not decode" in str(caught.value) or "differs from the signed index" in str(caught.value)
    assert not (tmp_path / "out.frame").exists()


def test_memory_above_the_bound_is_refused_before_anything_is_read(shim, tmp_path):
    need = delta.check_memory(shim["record"], 1 << 40)
    missing = tmp_path / "nothing-here"  # reading the reference or the patch would fail differently
    with pytest.raises(delta.DeltaUnusable, match="more than the .* this device allows"):
        _apply(shim, tmp_path, patch=missing, old_dir=missing, bound=need - 1)
    record = shim["record"]
    understated = delta.Patch.from_annotations(dict(record.to_annotations(), **{"vnd.bundler.delta.memory": "1"}))
    with pytest.raises(delta.DeltaUnusable, match="this device allows"):
        _apply(shim, tmp_path, record=understated, patch=missing, old_dir=missing, bound=need - 1)


def test_an_installed_file_that_differs_is_not_a_reference(shim, tmp_path):
    edited = tmp_path / "edited-version"
    shutil.copytree(shim["old_dir"], edited)
    with open(edited / INSTALLED, "r+b") as f:
        f.seek(4096)
        f.write(b"\0")
    with pytest.raises(delta.DeltaUnusable, match="differs from its index"):
        _apply(shim, tmp_path, old_dir=edited)


def test_the_frame_is_encoded_at_the_fast_level_whatever_level_the_publisher_used(shim, tmp_path):
    """The record no longer names a level or a libzstd: whatever the frame was made with, the device's own
    encoding at REENCODE_LEVEL is what the new file holds (the level-19 frame is larger to make, never to apply)."""
    assert not any(k.endswith((".level", ".zstd")) for k in shim["record"].to_annotations())
    out, _, _ = _apply(shim, tmp_path)
    new = open(shim["new"].path(containerd.SHIM), "rb").read()
    # The same bytes with one worker or several (zstd's jobs cut the same way), at the fast level's window.
    for workers in (1, 2):
        assert open(out, "rb").read() == delta.reencoder(len(new), workers).compress(new)
    assert zstandard.get_frame_parameters(open(out, "rb").read(18)).window_size == 1 << delta.REENCODE_WINDOW_LOG


def test_memory_bound_from_option_or_environment():
    assert delta.memory_bound({}) == delta.DEFAULT_MEMORY
    assert delta.memory_bound({delta.MEMORY_ENV: "64M"}) == 64 << 20
    assert delta.memory_bound({delta.MEMORY_ENV: "64M"}, option="1G") == 1 << 30
    with pytest.raises(UsageError, match=delta.MEMORY_ENV):
        delta.memory_bound({delta.MEMORY_ENV: "lots"})


def test_a_record_missing_a_field_is_not_a_patch():
    with pytest.raises(delta.DeltaUnusable, match="vnd.bundler.delta.size"):
        delta.Patch.from_annotations(
            {
                k: v
                for k, v in delta.Patch("g", 0, "a", "b", "c", 1, 2, 3, 10, 4).to_annotations().items()
                if not k.endswith(".size")
            }
        )


def test_the_install_links_the_decoded_files_and_refuses_a_damaged_one(shim, tmp_path):
    """An install takes a delta's decoded files by hard link, each hashed again through the link it made
    (groups.link_checked); a file damaged after it was decoded is not taken, and nothing of the group stays."""
    _, work, _ = _apply(shim, tmp_path)
    entry = shim["new_entries"][0]
    decoded = {entry.path: str(work / entry.path)}
    dest = tmp_path / "version"
    assert groups.link_checked(shim["new_entries"], decoded, str(dest)) is None
    installed = dest / INSTALLED
    assert installed.stat().st_ino == (work / INSTALLED).stat().st_ino  # linked, not written again
    assert installed.stat().st_mode & 0o7777 == entry.mode
    summed = subprocess.run(["sha256sum", str(installed)], check=True, capture_output=True, text=True).stdout
    assert summed.split()[0] == entry.sha256
    assert _md5(installed) == shim["new"].md5sums[containerd.SHIM]
    with open(work / INSTALLED, "r+b") as f:  # a bit flipped on disk between the decode and the install
        f.seek(entry.size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 1]))
    other = tmp_path / "other-version"
    assert groups.link_checked(shim["new_entries"], decoded, str(other)) is entry
    assert not (other / INSTALLED).exists()

"""stub/status.py and the probation records on real directories: disk use with hard links counted once, and
records that a crash or a hand left damaged read as absent, never as a probation."""

import os

from stub import probation, status
from stub.root import INDEX_FILE, LOCKS_DIR, MARKER, PROBATION

A, B = "a" * 64, "b" * 64


def make_version(root, bundle_id, version, policy=""):
    path = os.path.join(root, bundle_id)
    os.makedirs(os.path.join(path, "bin"))
    with open(os.path.join(path, MARKER), "w") as f:
        f.write(bundle_id + "\n")
    with open(os.path.join(path, INDEX_FILE), "w") as f:
        f.write(f'{{"version": "{version}"{policy}}}')
    return path


def test_disk_use_counts_a_hard_linked_file_once(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, LOCKS_DIR))
    old, new = make_version(root, A, "1.0.0"), make_version(root, B, "1.0.1")
    with open(os.path.join(old, "bin", "shared"), "wb") as f:
        f.write(os.urandom(256 << 10))
    os.link(os.path.join(old, "bin", "shared"), os.path.join(new, "bin", "shared"))  # as stub/shared.py links
    with open(os.path.join(new, "bin", "changed"), "wb") as f:
        f.write(os.urandom(64 << 10))
    os.symlink(B, os.path.join(root, "current"))
    os.symlink(A, os.path.join(root, "previous"))
    report = status.collect(root)
    by_id = {v["bundle_id"]: v for v in report["versions"]}
    shared = os.lstat(os.path.join(old, "bin", "shared")).st_blocks * 512
    changed = os.lstat(os.path.join(new, "bin", "changed")).st_blocks * 512
    assert by_id[B]["bytes"] - by_id[B]["own_bytes"] == shared  # the linked file is not its own
    assert by_id[B]["own_bytes"] >= changed and by_id[A]["own_bytes"] < shared
    assert report["total_bytes"] == sum(v["own_bytes"] for v in report["versions"]) + shared
    assert (by_id[B]["role"], by_id[A]["role"]) == ("current", "previous")
    assert report["probation"] is None and report["rolls_back_on_its_own"] is False


def test_a_damaged_probation_record_is_no_probation(tmp_path):
    root = str(tmp_path)
    make_version(root, B, "1.0.1", ', "update_policy": {"probation_starts": 2}')
    os.symlink(B, os.path.join(root, "current"))
    for text in ("", "bundle\t" + B + "\n", "bundle\tshort\nstarts\t1\n", "bundle\t" + B + "\nstarts\t-1\n"):
        with open(os.path.join(root, PROBATION), "w") as f:
            f.write(text)
        assert probation.read_probation(root) is None, text
        assert status.collect(root)["probation"] is None
    with open(os.path.join(root, PROBATION), "w") as f:
        f.write(f"bundle\t{B}\nprevious\t{A}\nstarts\t1\nsince\t0\n")
    report = status.collect(root)
    assert report["probation"]["starts"] == 1 and report["probation"]["probation_starts"] == 2
    assert report["rolls_back_on_its_own"] is True
    assert "has made 1 of 2 starts without a mark" in status.status(root, "demo", False)

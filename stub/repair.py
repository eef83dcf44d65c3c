"""--bundle-repair: re-verify the installed version of this bundle against its payload, and restore every file
that differs (missing, edited, replaced by something else, or with another mode) from the verified payload.

Under the install lock. The groups holding damaged files are extracted (and verified, as at install) into a work
dir beside the version; each damaged file is then renamed into place, so a crash leaves either the damaged file
or the restored one, and a stale work dir the next install removes. Embedded image archives are rebuilt from
their blobs the same way and compared byte for byte. Images the online variant pulled are not in the payload:
a missing one is pulled again at the next start; their content is not re-checked here.
"""

import hashlib
import os
import stat
import tempfile

from payload import fs, rules
from payload.errors import HostError, IntegrityError
from payload.fs import CHUNK
from payload.rules import DIR_MODE, IMAGES_DIR
from stub import images, install, locking, owner
from stub.root import LOCK


def _sha256(path):
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _problem(path, size, sha256, mode):
    """Why the installed file at `path` is not a regular file of `size` bytes, `sha256` and `mode`, or None."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size != size or _sha256(path) != sha256:
        return "edited"
    if stat.S_IMODE(st.st_mode) != mode:
        return f"mode {stat.S_IMODE(st.st_mode):o}, not {mode:o}"
    return None


def damaged_files(inst, index):
    """[(entry, why)] for every installed file of this version that is not what the index says."""
    found = ((e, _problem(os.path.join(inst.path, e.path), e.size, e.sha256, e.mode)) for e in index.files())
    return [(e, why) for e, why in found if why]


def check_installed(inst, index):
    """Raise IntegrityError naming every installed file that differs from the index (--bundle-install)."""
    damaged = damaged_files(inst, index)
    if damaged:
        raise IntegrityError(
            "{} differs from its payload: {}; restore it with --bundle-repair".format(
                inst.path, ", ".join(f"{e.path} ({why})" for e, why in damaged)
            )
        )


def _put_in_place(source, target):
    if os.path.isdir(target) and not os.path.islink(target):
        fs.safe_rmtree(target)
    fs.safe_mkdir(os.path.dirname(target), DIR_MODE)
    os.replace(source, target)
    fs.fsync_dir(os.path.dirname(target))


def _embedded(index):
    return [i for i in index.images if i.embedded]


def repair(payload, f, inst):
    """Restore what differs; returns a one-line summary. Installs the bundle when it is not installed at all."""
    from payload.groups import extract_group
    from payload.outside import check_outside

    index = payload.index
    install.prepare_root(inst.root)
    owner.check(inst.root, index.name)
    check_outside(payload, f)
    if not inst.is_installed():
        install.install(payload, f, inst, after_extract=lambda work: images.write_embedded(work, index))
        return f"{inst.root}: {index.name} {index.version} was not installed; installed it ({inst.bundle_id[:12]})"
    lock = locking.exclusive(os.path.join(inst.root, LOCK))
    work = None
    files = index.files()
    embedded = _embedded(index)
    restored, directories = [], []
    try:
        install.remove_stale_work(inst.root)
        damaged = damaged_files(inst, index)
        needed = set(e.group for e, _ in damaged)
        if embedded:  # an archive is rebuilt from its blobs to be compared
            needed.update(e.group for e in index.entries if e.kind == "blob")
        if needed:
            work = tempfile.mkdtemp(
                prefix="." + inst.bundle_id + install.WORK_SUFFIX + f"{os.getpid()}-repair-", dir=inst.root
            )
            data = payload.open_data(f)  # a split bundle's parts, each part's sha256 checked, as at install
            with data.verifying():
                for group in index.groups:
                    if group.name in needed:
                        extract_group(data, payload.data_offset, group, index.entries_of(group.name), work)
            for entry, why in damaged:
                _put_in_place(os.path.join(work, entry.path), os.path.join(inst.path, entry.path))
                restored.append(f"{entry.path} ({why})")
            if embedded:
                images.write_embedded(work, index)
                for image in embedded:
                    name = os.path.join(IMAGES_DIR, image.archive_name)
                    fresh, installed = os.path.join(work, name), os.path.join(inst.path, name)
                    st = os.stat(fresh)
                    why = _problem(installed, st.st_size, _sha256(fresh), stat.S_IMODE(st.st_mode))
                    if why:
                        _put_in_place(fresh, installed)
                        restored.append(f"{name} ({why})")
        directories = _restore_directory_modes(inst, files, embedded)
    except OSError as exc:
        raise HostError(f"cannot repair {inst.path}: {exc.strerror or exc}") from None
    finally:
        if work is not None:
            fs.safe_rmtree(work)
        os.close(lock)
    total = len(files) + len(embedded)
    if not restored and not directories:
        return f"{inst.path}: ok, {total} file(s) verified, nothing to repair"
    also = f" and {len(directories)} director{'y' if len(directories) == 1 else 'ies'}" if directories else ""
    return f"{inst.path}: repaired {len(restored)} of {total} file(s){also}: {', '.join(restored + directories)}"


def _restore_directory_modes(inst, files, embedded):
    """Give every directory of the version its mode back (another mode could let others swap a file in it)."""
    dirs = {""} | {d for e in files for d in rules.parents(e.path)}
    if embedded:
        dirs.add(IMAGES_DIR)
    restored = []
    for d in sorted(dirs):
        path = os.path.join(inst.path, d) if d else inst.path
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) != DIR_MODE:
            os.chmod(path, DIR_MODE)
            restored.append(f"{d or '.'}/ (mode {stat.S_IMODE(st.st_mode):o}, not {DIR_MODE:o})")
    return restored

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

from payload import fs
from payload.errors import HostError, IntegrityError
from payload.fs import CHUNK
from stub import images, install, locking, owner
from stub.root import LOCK


def _sha256(path):
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _problem(path, entry):
    """Why the installed file at `path` is not `entry`, or None when it is."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size != entry.size or _sha256(path) != entry.sha256:
        return "edited"
    if stat.S_IMODE(st.st_mode) != entry.mode:
        return f"mode {stat.S_IMODE(st.st_mode):o}, not {entry.mode:o}"
    return None


def damaged_files(inst, index):
    """[(entry, why)] for every installed file of this version that is not what the index says."""
    found = ((e, _problem(os.path.join(inst.path, e.path), e)) for e in index.files())
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
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.replace(source, target)
    fs.fsync_dir(os.path.dirname(target))


def _embedded(index):
    return [i for i in index.images if i.get("embedded")]


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
    try:
        install.remove_stale_work(inst.root)
        files = index.files()
        damaged = damaged_files(inst, index)
        needed = set(e.group for e, _ in damaged)
        if _embedded(index):
            needed.update(e.group for e in index.entries if e.kind == "blob")
        restored = []
        if needed:
            work = tempfile.mkdtemp(
                prefix="." + inst.bundle_id + install.WORK_SUFFIX + f"{os.getpid()}-repair-", dir=inst.root
            )
            for group in index.groups:
                if group.name in needed:
                    extract_group(f, payload.data_offset, group, index.entries_of(group.name), work)
            for entry, why in damaged:
                _put_in_place(os.path.join(work, entry.path), os.path.join(inst.path, entry.path))
                restored.append(f"{entry.path} ({why})")
            if _embedded(index):
                images.write_embedded(work, index)
                for image in _embedded(index):
                    name = os.path.join(images.IMAGES_DIR, images.archive_name(image))
                    fresh, installed = os.path.join(work, name), os.path.join(inst.path, name)
                    why = (
                        "missing"
                        if not os.path.isfile(installed)
                        else "edited"
                        if _sha256(installed) != _sha256(fresh)
                        else None
                    )
                    if why:
                        _put_in_place(fresh, installed)
                        restored.append(f"{name} ({why})")
    except OSError as exc:
        raise HostError(f"cannot repair {inst.path}: {exc.strerror or exc}") from None
    finally:
        if work is not None:
            fs.safe_rmtree(work)
        os.close(lock)
    if not restored:
        return f"{inst.path}: ok, {len(files)} file(s) verified, nothing to repair"
    return f"{inst.path}: repaired {len(restored)} of {len(files)} file(s): {', '.join(restored)}"

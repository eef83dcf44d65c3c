"""Install a bundle into <root>/<bundle-id>/ once: lock, check again, extract and verify into a sibling work
dir, fsync, rename into place, then move the `current` and `previous` symlinks."""

import os
import stat
import sys

from payload import fs, progress
from payload.errors import HostError
from payload.rules import DEFAULT_MODE, DIR_MODE, glibc_version
from stub import locking, owner
from stub.root import CURRENT, INDEX_FILE, LOCK, LOCKS_DIR, MARKER, PREVIOUS

WORK_SUFFIX = fs.TEMP_MARK  # work dirs, temp files and symlinks being swapped all carry it
SPACE_MARGIN = 16 << 20  # kept free after an install, so that the runtime does not start on a full disk


def check_glibc(index):
    """Refuse, before anything is written, a system whose glibc is older than the bundle's floor (min_glibc): its
    files would install and then fail to load. Only a first install asks: an installed start never does."""
    needed = glibc_version(index.min_glibc)
    if needed is None:
        return
    name, version = system_libc()
    have = glibc_version(".".join(version.split(".")[:2]))
    if name == "glibc" and have is not None and have >= needed:
        return
    who, fix = (
        (index.min_glibc_file, f"a build of {index.min_glibc_file} linked against an older glibc, or a static one")
        if index.min_glibc_file
        else ("its stub", "the portable stub, or --stub static")
    )
    has = f"glibc {version}" if name == "glibc" else "no glibc"
    raise HostError(
        f"{index.name} {index.version} needs glibc {index.min_glibc} or newer ({who} needs it), this system has "
        f"{has}; run it on a newer system, or rebuild the bundle with {fix} (docs/devices.md)"
    )


def system_libc():
    """("glibc", "2.36") for the system's glibc; ("", "") where it has none. A stub on the C library it carries
    asks the system's `getconf` (its own confstr would answer for the carried one)."""
    from stub.launch import clean_environment, runs_on_carried_libc

    if not runs_on_carried_libc():
        try:
            answer = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"
        except (ValueError, OSError):
            answer = ""
    else:
        import subprocess

        try:
            answer = subprocess.run(
                ["getconf", "GNU_LIBC_VERSION"],
                env=clean_environment(os.environ),
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                timeout=30,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            answer = ""  # no getconf: no glibc (musl and busybox systems have none that answers this)
    name, _, version = answer.partition(" ")
    return (name, version) if name == "glibc" else ("", "")


def prepare_root(root):
    """Check the install root and the directories above it (check_root), then create what is missing: nothing is
    created under a directory that others control."""
    root = os.path.abspath(root)
    if os.geteuid() == 0 and os.path.islink(root):
        raise HostError(f"install root {root} is a symlink; as root, use a real directory (--bundle-dir)")
    existed = os.path.isdir(root)
    existing = root
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    check_root(root, existing)
    try:
        os.makedirs(os.path.join(root, LOCKS_DIR), mode=DIR_MODE, exist_ok=True)
    except OSError as exc:
        raise HostError(f"cannot create install root {root}: {exc.strerror}; choose a writable --bundle-dir") from None
    if not existed:
        check_root(root, root)  # what was made above, the root among them


def check_root(root, path):
    """Refuse an install root that another user could swap or fill, as sshd's StrictModes refuses a home: `path`
    (the root or its deepest existing ancestor) and every directory above it, as written and as resolved, must be
    owned by root or by this user and writable by nobody else. A sticky directory writable by all (/tmp) may lie
    above the root: there only an entry's owner can rename or remove it, and the entry below it is checked to be
    ours. The root itself may not be sticky: others could create names in it before the installer does."""
    uid = os.geteuid()
    chains = [_chain(path)]
    real = os.path.realpath(path)
    if real != path:
        chains.append(_chain(real))
    for chain in chains:
        last = chain[-1] if path == root else None  # the root itself (as written, then as resolved)
        for directory in chain:
            try:
                st = os.lstat(directory)
            except OSError as exc:
                raise HostError(f"cannot check install root {root}: {directory}: {exc.strerror}") from None
            if st.st_uid not in (0, uid):
                raise HostError(
                    f"install root {root}: {directory} belongs to uid {st.st_uid}, who could swap what runs from "
                    f"it; use a root whose directories belong to {'root' if uid == 0 else 'root or you'}: "
                    "choose another --bundle-dir (or chown that directory)"
                )
            if stat.S_ISLNK(st.st_mode):
                continue  # its target's directories are in the resolved chain
            sticky_above = st.st_mode & stat.S_ISVTX and directory != last
            if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky_above:
                raise HostError(
                    f"install root {root}: {directory} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}), "
                    f"who could swap what runs from it; chmod go-w {directory} or choose another --bundle-dir"
                )


def _chain(path):
    """`path` and every directory above it, from / down."""
    chain = [path]
    while path != os.path.dirname(path):
        path = os.path.dirname(path)
        chain.append(path)
    return chain[::-1]


def check_host(root, needed):
    """Refuse early, with numbers, a root without room or on a noexec mount."""
    st = os.statvfs(root)
    free = st.f_bavail * st.f_frsize
    if free < needed + SPACE_MARGIN:
        raise HostError(
            f"not enough space in {root}: the install needs {(needed + SPACE_MARGIN) / 1e6:.1f} MB "
            f"({needed / 1e6:.1f} MB of files and a margin of {SPACE_MARGIN / 1e6:.1f} MB kept free for the runtime), "
            f"{free / 1e6:.1f} MB free; free space or choose another --bundle-dir"
        )
    if st.f_flag & getattr(os, "ST_NOEXEC", 8):
        raise HostError(
            f"install root {root} is on the noexec mount {_mount_point(root)}, programs installed there cannot run; "
            "choose another --bundle-dir (or env BUNDLE_DIR)"
        )


def _mount_point(path):
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def remove_stale_work(root):
    """Work dirs left by an install that was killed; only called under the install lock."""
    for name in os.listdir(root):
        if WORK_SUFFIX in name and name.startswith("."):
            fs.safe_rmtree(os.path.join(root, name))


def point_current(root, bundle_id):
    """Make `current` name this version, and `previous` the one `current` named before."""
    current = os.path.join(root, CURRENT)
    old = fs.link_target(current)
    if old == bundle_id:
        return
    if old is not None:
        fs.replace_symlink(old, os.path.join(root, PREVIOUS), durable=False)
    fs.replace_symlink(bundle_id, current)


def start_decompressing(payload, path):
    """Start decompressing the largest group of an unsplit bundle now, into memory, from a file of its own
    (payload.groups.start_extraction with `ahead`): a first install's checks then run while the longest part goes
    on, and `install` says where the group goes (and reads the other groups from the same file). None for a split
    bundle, whose parts are read by one reader at a time: with a second one reading them during the checks, a
    first install from the FAT32 stick of tests/e2e/test_airgap_doc.py (fusefat) found a part's sha256 wrong
    (cause not found; docs/benchmarks.md)."""
    from payload.groups import start_extraction

    index = payload.index
    if payload.split or not index.groups:
        return None
    group = max(index.groups, key=lambda g: g.csize)  # the longest to decompress
    f = open(path, "rb")
    try:
        # The file itself, not payload.open_data(f): payload.parts imports hashlib, whose OpenSSL the frozen stub
        # would unpack before the decoder starts.
        return start_extraction(f, payload.data_offset, group, index.entries_of(group.name), ahead=True, closing=f)
    except BaseException:
        f.close()
        raise


def install(payload, f, inst, after_extract=None, decoded=None, started=None):
    """Install `payload` (open as `f`) into `inst` unless it is there already. Returns True if it extracted.
    `decoded`: {entry path: file} a delta update decoded and checked (stub/deltas.py); a group whose files are all
    there is linked from them, each hashed again through its link, instead of being decoded from `f`. `started`:
    what start_decompressing started, finished here (or cancelled)."""
    from payload.groups import extract_group
    from stub import shared

    prepare_root(inst.root)
    lock = locking.exclusive(os.path.join(inst.root, LOCK))
    try:
        remove_stale_work(inst.root)
        owner.check(inst.root, payload.index.name)
        if inst.is_installed():
            owner.record(inst.root, payload.index.name)
            point_current(inst.root, inst.bundle_id)
            return False
        if os.path.lexists(inst.path):  # a dir without its marker was not made by us: replace it
            fs.safe_rmtree(inst.path)
        index = payload.index
        # A missing or short part is named before anything is written.
        data = payload.open_data(started.source if started is not None else f)
        held = shared.Held(inst.root, inst.bundle_id)
        shared_size = held.shared_size(index)
        check_host(inst.root, index.installed_size - shared_size)
        sharing = f", {shared_size / 1e6:.1f} MB of it linked to installed versions" if shared_size else ""
        sys.stderr.write(
            f"{index.name}: installing {index.name} {index.version} ({index.variant}, "
            f"{index.installed_size / 1e6:.1f} MB{sharing}) into {inst.path}\n"
        )
        # Not durable=True: the extraction fsyncs every file as it writes it, and the marker goes last.
        with fs.atomic_directory(inst.path, durable=False) as work:
            os.chmod(work, DIR_MODE)  # made 0700
            held_files = held.extraction(index, held.link_archives(work, index))
            display = progress.callback()  # a bar on a terminal only
            try:
                with data.verifying():  # streamed from the parts of a split bundle, every part's sha256 checked
                    if started is not None:  # first: its reader is done before another group is read from `data`
                        started.finish(
                            work, progress=_shown(display, "installing " + started.group.name), held=held_files
                        )
                    for group in index.groups:
                        if started is not None and group.name == started.group.name:
                            continue
                        if decoded and _from_decoded(index, group, decoded, work, held_files):
                            continue
                        extract_group(
                            data,
                            payload.data_offset,
                            group,
                            index.entries_of(group.name),
                            work,
                            progress=_shown(display, "installing " + group.name),
                            held=held_files,
                        )
            finally:
                progress.finish(display)
            if after_extract is not None:
                after_extract(work)
            # What this version is (its version string, for the downgrade check; its entries, for repair).
            fs.write_atomic(os.path.join(work, INDEX_FILE), payload.index_bytes, durable=False, mode=DEFAULT_MODE)
            _write_marker(work, inst.bundle_id)
        fs.fsync_dir(inst.root)
        owner.record(inst.root, index.name)  # only once something of this name is installed
        point_current(inst.root, inst.bundle_id)
        return True
    except OSError as exc:
        raise HostError(f"cannot install into {inst.root}: {exc.strerror or exc}") from None
    finally:
        if started is not None:
            started.cancel()
        os.close(lock)


def _shown(display, label):
    return lambda done, total: display(label, done, total)


def _from_decoded(index, group, decoded, work, held):
    """Link `group`'s files from what a delta decoded (link_checked); False to extract it from the file instead."""
    from payload.groups import link_checked

    entries = index.entries_of(group.name)
    if not entries or not all(e.kind == "file" and e.path in decoded for e in entries):
        return False
    missed = link_checked(entries, decoded, work, held)
    if missed is None:
        return True
    sys.stderr.write(
        f"{index.name}: {missed.path} as the delta decoded it does not match the signed index; installing group "
        f"{group.name!r} from the new file\n"
    )
    return False


def _write_marker(work, bundle_id):
    for dirpath, _, _ in os.walk(work):
        fs.fsync_dir(dirpath)
    path = os.path.join(work, MARKER)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), DEFAULT_MODE)
    try:
        os.fchmod(fd, DEFAULT_MODE)  # not the umask's mode
        os.write(fd, (bundle_id + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    fs.fsync_dir(work)

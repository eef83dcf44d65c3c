"""`bundler copy BUNDLE DEST_DIR [--split SIZE]`: put a bundle on a medium (a USB stick) and prove it is there.

Every file (the parts, the executable, its side files: the SBOM and the provenance, checked first to belong to the
bundle, then NAME.sha256) is written under a temp name, fsynced, dropped from the
page cache (posix_fadvise DONTNEED) so that the read-back comes from the medium rather than from memory, read
back and compared with the source's sha256, and only then renamed: a stick pulled half way never shows a
complete-looking but short file. Run again after an interruption, the copy keeps every file that reads back
right and rewrites the rest. FAT32 holds files of at most 4 GiB - 1: a larger file is refused at once (exit 4)
unless --split cuts it, and so is a copy the destination has no room for, before a byte is written.
"""

import errno
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bundler.media.outputs import checksum_path, read_checksums, side_files, side_paths, stale_parts
from bundler.media.split import Planned, bundle_source, checksum_file, hash_range, plan_split
from payload import fs
from payload import progress as progress_display
from payload.errors import HostError, IntegrityError, UsageError, write_error
from payload.fs import CHUNK
from payload.layout import open_payload

FAT32_LIMIT = (1 << 32) - 1
# fstype in /proc/self/mountinfo: the kernel's drivers, and fusefat (FUSE types read "fuse.<name>").
FAT_TYPES = {"vfat", "msdos", "fat", "umsdos", "fuse.fusefat"}


@dataclass
class Medium:
    """What the destination's file system allows."""

    mount_point: str
    fstype: str
    file_limit: object = None  # the largest file, in bytes, or None for no known limit

    def describe(self):
        return "{} ({} on {})".format(
            "FAT32" if self.file_limit == FAT32_LIMIT else self.fstype, self.fstype, self.mount_point
        )


def _unescape(field_text):
    """Mount points in mountinfo escape space, tab, newline and backslash as octal."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field_text = field_text.replace(code, chr(int(code[1:], 8)))
    return field_text


def medium_of(path, mountinfo="/proc/self/mountinfo"):
    """The mount holding `path` (the deepest mount point above it) and its file size limit."""
    real = os.path.realpath(path)
    best = ("/", "unknown")
    try:
        with open(mountinfo) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split(" ")
        if " - " not in line or len(fields) < 5:
            continue
        point = _unescape(fields[4])
        fstype = line.split(" - ", 1)[1].split(" ")[0]
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, fstype)
    return Medium(best[0], best[1], FAT32_LIMIT if best[1] in FAT_TYPES else None)


def check_file_sizes(files, medium, dest):
    """Refuse, before anything is read or written, a file larger than the medium holds."""
    if medium.file_limit is None:
        return
    for name, size in files:
        if size > medium.file_limit:
            raise HostError(
                f"{name} is {size} bytes, and {medium.describe()} on {dest} holds files of at most "
                f"{medium.file_limit} bytes (4 GiB - 1); copy with --split 2G"
            )


@dataclass
class Report:
    written: list = field(default_factory=list)
    kept: list = field(default_factory=list)

    def summary(self, dest, name):
        written = sum(p.size for p in self.written)
        kept = sum(p.size for p in self.kept)
        return (
            f"{dest}: {len(self.written)} files written and read back ({written / 1e6:.1f} MB), {len(self.kept)} kept "
            f"as they verified ({kept / 1e6:.1f} MB); check there with: sha256sum -c {name}.sha256"
        )


def copy_bundle(bundle, dest, split=None, progress=None, log=print):
    """Copy `bundle` (and its parts) to the directory `dest`, cutting it into parts of `split` bytes when given."""
    progress = progress or progress_display.callback(False)
    bundle, dest = Path(bundle), Path(dest)
    if not dest.is_dir():
        raise UsageError(f"{dest} is not a directory; mount the medium and pass the directory to copy into")
    medium = medium_of(dest)
    if split is not None and medium.file_limit is not None and split > medium.file_limit:
        raise HostError(
            f"--split makes parts of {split} bytes, and {medium.describe()} holds files of at most "
            f"{medium.file_limit} bytes; use --split 2G"
        )
    with open(bundle, "rb") as f:
        payload = open_payload(str(bundle), f)
        sides = [Planned(p.name, p.stat().st_size, sha, path=str(p)) for p, sha in side_files(bundle, payload.index)]
        if split is None:
            directory = os.path.dirname(os.path.realpath(bundle))
            sizes = [(p.name, p.size) for p in payload.index.parts] + [(bundle.name, os.fstat(f.fileno()).st_size)]
            check_file_sizes(sizes, medium, dest)
            files = _plan_as_is(bundle, payload, f, directory, progress)
            return _write_all(_with_sides(files, sides), bundle.name, dest, progress, log)
        source = bundle_source(bundle, f)
        with tempfile.TemporaryDirectory(prefix="bundler-copy-") as work:
            _, files = plan_split(
                source,
                bundle.name,
                split,
                work,
                progress=_counting(progress, "reading " + bundle.name, source.data_size),
            )
            return _write_all(_with_sides(files, sides), bundle.name, dest, progress, log)


def _with_sides(files, sides):
    """The side files go after the executable, before NAME.sha256: that file, written last, says the copy is whole."""
    return files[:-1] + sides + files[-1:]


def _counting(progress, label, total):
    state = {"done": 0}

    def advance(count):
        state["done"] += count
        progress(label, state["done"], total)

    return advance


def _plan_as_is(bundle, payload, f, directory, progress):
    """The bundle's own files with their sha256, read from the source once (a damaged part is named here)."""
    total = sum(p.size for p in payload.index.parts) + os.fstat(f.fileno()).st_size
    advance = _counting(progress, "reading " + bundle.name, total)
    files = []
    data = payload.open_data(f)  # a missing or short part is named here
    with data.verifying():  # and a damaged one here: every part's sha256 is checked against the index
        start = payload.data_offset
        for part in payload.index.parts:
            sha = hash_range(data, start, part.size, advance)
            files.append(Planned(part.name, part.size, sha, path=os.path.join(directory, part.name)))
            start += part.size
    files.append(Planned(bundle.name, os.fstat(f.fileno()).st_size, _hash_file(str(bundle), advance), path=str(bundle)))
    _check_sidecar(bundle, files)
    return files + [checksum_file(bundle.name, files)]


def _hash_file(path, advance):
    sha = hashlib.sha256()
    with open(path, "rb") as src:
        for chunk in iter(lambda: src.read(CHUNK), b""):
            sha.update(chunk)
            advance(len(chunk))
    return sha.hexdigest()


def _check_sidecar(bundle, files):
    """The source's own BUNDLE.sha256, when there is one, must agree: a damaged source is never carried on."""
    sidecar = checksum_path(bundle)
    listed = read_checksums(bundle)
    for planned in files:
        sha = listed.get(planned.name)
        if sha is not None and sha != planned.sha256:
            raise IntegrityError(
                f"{planned.name} does not match {sidecar}: the source is damaged; build or copy it again"
            )


def _write_all(files, name, dest, progress, log):
    """Keep what is there and verifies, check the space for the rest, then write, read back and rename each."""
    for leftover in fs.remove_dead_temps(str(dest)):
        log(f"removed {leftover}, left by an interrupted copy")
    names = {p.name for p in files}
    cluster = max(os.statvfs(str(dest)).f_frsize, os.stat(str(dest)).st_blksize, 512)
    check = _counting(
        progress, f"checking what {dest} holds", sum(p.size for p in files if _size_or_none(dest / p.name) == p.size)
    )
    todo, kept, freed = [], [], 0
    for planned in files:
        size = _size_or_none(dest / planned.name)
        if size == planned.size and _read_back(dest / planned.name, check) == planned.sha256:
            kept.append(planned)
            continue
        todo.append(planned)
        freed += _clusters(size or 0, cluster)
    stale = [n for n in stale_parts(str(dest), name) if n not in names]
    stale += [p.name for p in side_paths(dest / name) if p.name not in names and p.is_file()]  # of another build
    freed += sum(_clusters(_size_or_none(dest / n) or 0, cluster) for n in stale)
    _check_space(dest, sum(_clusters(p.size, cluster) for p in todo), freed)
    total = 2 * sum(p.size for p in todo)
    advance = _counting(progress, f"copying to {dest}", total)
    for planned in todo:
        _put(planned, dest, advance)
    for leftover in stale:  # parts of an earlier, other split of this name, side files of another build
        fs.safe_unlink(str(dest / leftover))
    report = Report(todo, kept)
    log(report.summary(dest, name))
    return report


def _size_or_none(path):
    try:
        return os.stat(str(path)).st_size
    except FileNotFoundError:
        return None


def _clusters(size, cluster):
    return (size + cluster - 1) // cluster * cluster


def _check_space(dest, needed, freed):
    st = os.statvfs(str(dest))
    if st.f_blocks == 0:
        return  # the file system does not say (fusefat with clusters under 1 KiB): a full medium fails on write
    free = st.f_bavail * st.f_frsize + freed
    if needed > free:
        raise HostError(
            f"not enough space on {dest}: the copy needs {needed} bytes ({needed / 1e6:.1f} MB), {free} bytes "
            f"({free / 1e6:.1f} MB) are free; free space there or use a larger medium"
        )


def _drop_cache(fd):
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _read_back(path, advance):
    """The sha256 of what the medium holds at `path`: the page cache is dropped first, so it is read from there."""
    sha = hashlib.sha256()
    fd = os.open(str(path), os.O_RDONLY)
    try:
        _drop_cache(fd)
        while True:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                break
            sha.update(chunk)
            advance(len(chunk))
    finally:
        os.close(fd)
    return sha.hexdigest()


def _put(planned, dest, advance):
    target = dest / planned.name
    fs.safe_unlink(str(target))  # it does not verify: its space is counted as free, and it must not look whole
    temp = fs.temp_name(str(target))
    try:
        sha = hashlib.sha256()
        fd = os.open(temp, os.O_WRONLY | os.O_TRUNC)
        try:
            for chunk in planned.chunks():
                sha.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                advance(len(chunk))
            _set_mode(fd, 0o755 if planned.path is not None and os.access(planned.path, os.X_OK) else 0o644)
            os.fsync(fd)
            _drop_cache(fd)
        finally:
            os.close(fd)
        if sha.hexdigest() != planned.sha256:
            raise IntegrityError(f"{planned.name} changed while being copied; do not change the bundle during the copy")
        if _read_back(temp, advance) != planned.sha256:
            raise IntegrityError(
                f"{planned.name} reads back from {dest} other than it was written: the medium is faulty; use "
                "another one"
            )
        os.replace(temp, str(target))
        fs.fsync_dir(str(dest))
    except OSError as exc:
        raise _host_error(exc, planned, dest) from None
    finally:
        fs.safe_unlink(temp)


def _set_mode(fd, mode):
    """FAT has no modes (every file shows as rwx, chmod fails with ENOSYS or EPERM): a copy never insists."""
    try:
        os.fchmod(fd, mode)
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL):
            raise


def _host_error(exc, planned, dest):
    if exc.errno == errno.EFBIG:
        return HostError(
            f"{planned.name} ({planned.size} bytes) is too large for the file system of {dest}; copy with --split 2G"
        )
    return write_error(
        exc,
        f"no space left on {dest} while writing {planned.name}; free space there or use a larger medium",
        lambda reason: f"cannot write {planned.name} into {dest}: {reason}",
    )

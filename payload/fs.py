"""File-system steps written once, for both sides: atomic file, atomic directory, symlink swap, quiet removal.

Every write that must appear whole goes through a temp name beside its target (same directory, so the rename
is atomic), and the temp is removed on any failure, Ctrl-C included. `durable=True` (the default) also fsyncs
the bytes before the rename and the directory after it, so a power cut leaves the old name or the new one,
never a name with missing bytes. Temp names hold the writer's PID (`.NAME.tmp-PID-XXXX`), so stale ones can be
told from those of a live process.
"""

import errno
import os

CHUNK = 1 << 20  # how much a streaming read or copy takes at once

TEMP_MARK = ".tmp-"


def temp_name(path, temp_dir=None):
    """A fresh temp path beside `path` (or in `temp_dir`, on the same file system), created empty (mode 0600)
    so that no other writer can take it."""
    directory, name = os.path.split(os.path.abspath(path))
    return _unique(temp_dir or directory, name, _create_file)


def _create_file(path):
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600))


def _unique(directory, name, create):
    """`create(path)` for a new path in `directory` named after `name` and this process, as tempfile names them
    (".NAME.tmp-PID-" and a random suffix); tempfile itself is not imported: with shutil and random it is a
    visible share of a first install's imports."""
    prefix = os.path.join(directory, "." + name + TEMP_MARK + f"{os.getpid()}-")
    for _ in range(100):
        path = prefix + os.urandom(6).hex()
        try:
            create(path)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(errno.EEXIST, "no free temporary name", prefix)


def _umask_mode():
    """The mode a plain open() would give a new file: 0666 less the umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def temp_pid(name):
    """The PID in a temp name made here, or None when `name` is not one."""
    _, mark, rest = os.path.basename(name).rpartition(TEMP_MARK)
    pid = rest.split("-", 1)[0]
    return int(pid) if mark and pid.isdigit() else None


def fsync_path(path):
    """fsync a file or a directory by name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path):
    fsync_path(path)


def commit(temp, path, durable=True):
    """Rename the finished `temp` over `path` (fsyncing it first, and the directory after, when durable)."""
    if durable:
        fsync_path(temp)
    os.replace(temp, path)
    if durable:
        fsync_dir(os.path.dirname(os.path.abspath(path)))


class atomic_path:
    """`with atomic_path(path) as temp`: a temp path for a tool that writes a file by name; it becomes `path` when
    the block ends without an exception (with `mode`, default 0666 less the umask), and is removed otherwise.

    These context managers are classes, not contextlib generators: every start imports this module, and contextlib
    (with functools and collections) is a measurable share of a start under qemu (docs/benchmarks.md)."""

    def __init__(self, path, durable=True, mode=None, temp_dir=None):
        self.path, self.durable, self.mode, self.temp_dir = path, durable, mode, temp_dir
        self.temp = None

    def __enter__(self):
        self.temp = temp_name(self.path, self.temp_dir)
        return self.temp

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                os.chmod(self.temp, _umask_mode() if self.mode is None else self.mode)
                commit(self.temp, self.path, self.durable)
        finally:
            safe_unlink(self.temp)
        return False


class atomic_file:
    """`with atomic_file(path) as out`: a file open for writing; `path` gets its bytes only once the block ends
    without an exception (and the file closed without one: a full disk can fail the last flush)."""

    def __init__(self, path, binary=True, durable=True, mode=None, temp_dir=None, encoding="utf-8"):
        self.atomic = atomic_path(path, durable, mode, temp_dir)
        self.binary, self.encoding = binary, encoding
        self.out = None

    def __enter__(self):
        temp = self.atomic.__enter__()
        try:
            self.out = open(temp, "wb") if self.binary else open(temp, "w", encoding=self.encoding)
        except BaseException as err:
            self.atomic.__exit__(type(err), err, err.__traceback__)
            raise
        return self.out

    def __exit__(self, exc_type, exc, tb):
        try:
            self.out.close()
        except BaseException as err:
            self.atomic.__exit__(type(err), err, err.__traceback__)
            raise
        return self.atomic.__exit__(exc_type, exc, tb)


def write_atomic(path, data, durable=True, mode=None, temp_dir=None):
    """Write `data` (bytes or str) to `path` atomically."""
    with atomic_file(path, binary=isinstance(data, bytes), durable=durable, mode=mode, temp_dir=temp_dir) as out:
        out.write(data)


class atomic_directory:
    """`with atomic_directory(path) as work`: an empty work dir beside `path`; it is renamed to `path` when the
    block ends without an exception (every file and directory in it fsynced first when durable), and removed
    otherwise. `path` must not exist."""

    def __init__(self, path, durable=True):
        self.parent, self.name = os.path.split(os.path.abspath(path))
        self.path, self.durable, self.work = path, durable, None

    def __enter__(self):
        self.work = _unique(self.parent, self.name, lambda path: os.mkdir(path, 0o700))
        return self.work

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                if self.durable:
                    sync_tree(self.work)
                os.rename(self.work, self.path)
                if self.durable:
                    fsync_dir(self.parent)
        finally:
            safe_rmtree(self.work)
        return False


def sync_tree(top):
    """fsync every regular file and directory under `top` (symlinks are not followed)."""
    for dirpath, _, filenames in os.walk(top):
        for filename in filenames:
            full = os.path.join(dirpath, filename)
            if not os.path.islink(full):
                fsync_path(full)
        fsync_dir(dirpath)


# A hard link is refused across file systems, past the link limit, and by file systems without links.
_NO_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP)


def link_or_copy(source, target):
    """`target` becomes a hard link to `source` (a copy where the file system refuses links), whole or not at all.
    It keeps `source`'s mode: a chmod through the link would change `source` too."""
    import stat

    with atomic_path(target, mode=stat.S_IMODE(os.stat(source).st_mode)) as temp:
        try:
            os.unlink(temp)
            os.link(source, temp)
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            import shutil

            with open(source, "rb") as src, open(temp, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)


def replace_symlink(target, link, durable=True):
    """Point `link` at `target` atomically: a new symlink under a temp name, renamed over `link`."""
    directory, name = os.path.split(os.path.abspath(link))
    temp = os.path.join(directory, "." + name + TEMP_MARK + f"{os.getpid()}-link")
    safe_unlink(temp)
    os.symlink(target, temp)
    try:
        os.rename(temp, link)
    except BaseException:
        safe_unlink(temp)
        raise
    if durable:
        fsync_dir(directory)


def link_target(path):
    """Where the symlink `path` points, or None when it is no symlink (or absent)."""
    return os.readlink(path) if os.path.islink(path) else None


def safe_unlink(path):
    """Remove a file or symlink; one that is not there is fine."""
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def safe_rmtree(path):
    """Remove a directory tree (or a file or symlink at `path`); one that is not there is fine."""
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
        else:
            import shutil

            shutil.rmtree(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def safe_mkdir(path, mode=0o755):
    """Create a directory and its missing parents, each one made here with exactly `mode` whatever the umask (a
    umask of 000 must not leave a directory of an installed version writable by others); one that exists is
    fine, and keeps its mode. Safe against another thread or process making the same directories."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        safe_mkdir(parent, mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if os.path.isdir(path):
            return
        raise
    os.chmod(path, mode)


def pid_alive(pid):
    """Whether a process with this PID exists (in this PID namespace)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_temps(directory, prefix=""):
    """Remove the temp names made here (see temp_name) in `directory` whose process is gone, of those starting
    with `prefix`; returns them."""
    removed = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return removed
    for name in names:
        if not name.startswith(prefix):
            continue
        pid = temp_pid(name)
        if pid is not None and pid != os.getpid() and not pid_alive(pid):
            safe_rmtree(os.path.join(directory, name))
            removed.append(name)
    return removed

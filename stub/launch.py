"""Replace this process with the bundle's entrypoint, with an environment cleaned of PyInstaller's traces."""

import errno
import os
import sys

from payload.errors import HostError, IntegrityError

ARGV0_VAR = "_BUNDLE_ARGV0"  # set by the launcher (stub/launcher.c): the name the user started the bundle by
# Set by the launcher when the stub runs on the C library the stub carries (`--stub static`): the fds of that
# library's memory files, which the loader has mapped by the time Python runs.
LIBC_FDS_VAR = "_BUNDLE_LIBC_FDS"
PYINSTALLER_VARS = (
    "_PYI_ARCHIVE_FILE",
    "_PYI_APPLICATION_HOME_DIR",
    "_PYI_PARENT_PROCESS_LEVEL",
    "_PYI_LINUX_PROCESS_NAME",
    "_PYI_SPLASH_IPC",
    "_MEIPASS2",
    ARGV0_VAR,  # the launcher's, for the stub alone
    LIBC_FDS_VAR,
)


def close_carried_libc(environ=os.environ):
    """Close the memory files of the carried C library the launcher left open for its loader (mapped now), so no
    program this stub starts inherits them. The variable stays for `runs_on_carried_libc`."""
    for fd in environ.get(LIBC_FDS_VAR, "").split(","):
        if fd.isdigit() and int(fd) > 2:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith("/memfd:") or "/.bundle-stub-" in target:
                os.close(int(fd))


def runs_on_carried_libc(environ=os.environ):
    return LIBC_FDS_VAR in environ


def prepare_data(inst):
    """Create <root>/data, the state that outlives versions (BUNDLE_DATA, {data}), before the runtime needs it."""
    try:
        os.makedirs(inst.data, 0o755, exist_ok=True)
    except OSError as exc:
        raise HostError(
            f"cannot create the data directory {inst.data}: {exc.strerror}; choose a writable --bundle-dir"
        ) from None


def command(entrypoint, inst, args):
    """The argv to exec: the entrypoint with {root}, {images} and {data} expanded, then the user's args untouched."""
    values = {"root": inst.path, "images": inst.images, "data": inst.data}
    argv = [_expand(a, values) for a in entrypoint]
    argv[0] = os.path.join(inst.path, argv[0])
    return argv + list(args)


def _expand(arg, values):
    for key, value in values.items():
        arg = arg.replace("{" + key + "}", value)
    return arg


def bundle_variables(inst, index):
    """The variables the runtime gets from the stub, in a stable order."""
    return [
        ("BUNDLE_ROOT", inst.path),
        ("BUNDLE_IMAGES", inst.images),
        ("BUNDLE_DATA", inst.data),
        ("BUNDLE_ID", inst.bundle_id),
        ("BUNDLE_NAME", index.name),
        ("BUNDLE_VERSION", index.version),
        ("BUNDLE_VARIANT", index.variant),
        ("BUNDLE_ARCH", index.arch),
    ]


def clean_environment(environ):
    """`environ` without the bootloader's traces: what a program this stub starts (the runtime, or the bundle
    again for a background pull, which must unpack on its own) gets."""
    env = dict(environ)
    for name in PYINSTALLER_VARS:
        env.pop(name, None)
    # The bootloader prepends its temp dir so the stub finds its own libssl and libz; the runtime must not.
    if "LD_LIBRARY_PATH_ORIG" in env:
        env["LD_LIBRARY_PATH"] = env.pop("LD_LIBRARY_PATH_ORIG")
    elif getattr(sys, "frozen", False):
        env.pop("LD_LIBRARY_PATH", None)
    return env


def environment(environ, inst, index, executable=None):
    """What the runtime gets: `environ` cleaned, the bundle's variables, and BUNDLE_EXECUTABLE, the bundle file
    that started it (so that its scripts can run `--bundle-mark-good` or `--bundle-wait-images`), when known."""
    env = clean_environment(environ)
    env.update(bundle_variables(inst, index))
    if executable:
        env["BUNDLE_EXECUTABLE"] = executable
    else:
        env.pop("BUNDLE_EXECUTABLE", None)  # a bundle started by another bundle's runtime: not ours
    return env


def shell_command(argv, inst, index):
    """--bundle-install's answer: one shell-quoted line that runs the installed entrypoint directly, with the
    variables it needs (`env` execs it, so under a service manager the runtime itself is the main process)."""
    import shlex

    env = "/usr/bin/env" if os.path.exists("/usr/bin/env") else "env"  # systemd before 239 wants a full path
    words = [env] + ["{}={}".format(*item) for item in bundle_variables(inst, index)] + list(argv)
    return " ".join(shlex.quote(w) for w in words)


def exec_entrypoint(argv, env, umask=None):
    """Become the runtime, with the umask the bundle was started with (when given)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if umask is not None:
        os.umask(umask)
    try:
        os.execve(argv[0], argv, env)
    except OSError as exc:
        raise _cannot_run(argv[0], exc) from None


def _cannot_run(program, exc):
    """The reason an installed program did not start, with the hint that fits it (never a noexec hint for a file
    that is simply gone)."""
    if exc.errno == errno.ENOENT or (exc.errno == errno.EACCES and not os.path.isfile(program)):
        return IntegrityError(f"cannot run {program}: the installed file is missing; restore it with --bundle-repair")
    if exc.errno == errno.EACCES and os.statvfs(program).f_flag & getattr(os, "ST_NOEXEC", 8):
        return HostError(
            f"cannot run {program}: its install root is on a noexec mount; choose another --bundle-dir (or "
            "env BUNDLE_DIR)"
        )
    return HostError(f"cannot run {program}: {exc.strerror}; check the installed file (--bundle-repair restores it)")

"""Replace this process with the bundle's entrypoint, with an environment cleaned of PyInstaller's traces."""

import os
import sys

from payload.errors import HostError

PYINSTALLER_VARS = ("_PYI_ARCHIVE_FILE", "_PYI_APPLICATION_HOME_DIR", "_PYI_PARENT_PROCESS_LEVEL",
                    "_PYI_LINUX_PROCESS_NAME", "_PYI_SPLASH_IPC", "_MEIPASS2")


def prepare_data(inst):
    """Create <root>/data, the state that outlives versions (BUNDLE_DATA, {data}), before the runtime needs it."""
    try:
        os.makedirs(inst.data, 0o755, exist_ok=True)
    except OSError as exc:
        raise HostError("cannot create the data directory %s: %s; choose a writable --bundle-dir"
                        % (inst.data, exc.strerror))


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


def environment(environ, inst, index):
    env = dict(environ)
    for name in PYINSTALLER_VARS:
        env.pop(name, None)
    # The bootloader prepends its temp dir so the stub finds its own libssl and libz; the runtime must not.
    if "LD_LIBRARY_PATH_ORIG" in env:
        env["LD_LIBRARY_PATH"] = env.pop("LD_LIBRARY_PATH_ORIG")
    elif getattr(sys, "frozen", False):
        env.pop("LD_LIBRARY_PATH", None)
    env.update({
        "BUNDLE_ROOT": inst.path,
        "BUNDLE_IMAGES": inst.images,
        "BUNDLE_DATA": inst.data,
        "BUNDLE_ID": inst.bundle_id,
        "BUNDLE_NAME": index.name,
        "BUNDLE_VERSION": index.version,
        "BUNDLE_VARIANT": index.variant,
        "BUNDLE_ARCH": index.arch,
    })
    return env


def exec_entrypoint(argv, env):
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(argv[0], argv, env)
    except OSError as exc:
        raise HostError("cannot run %s: %s; if the install root is on a noexec mount, choose another --bundle-dir"
                        % (argv[0], exc.strerror))

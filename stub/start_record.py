"""The start record: what the launcher (stub/launcher.c) needs to start an installed version on its own, written
by a start that got as far as exec with nothing left to do (docs/format.md, "The start record").

NUL-separated fields: the magic, the bundle id, the root, the state of the two pin directories, the paths that must
exist (archives of images the online variant left out), the entrypoint's argv, the variables the runtime gets, then
`end`. The launcher hands over to the stub whenever a field does not match what it sees.
"""

import os

from payload import fs
from payload.errors import HostError
from stub.root import PINS_DIR, SHARED_PINS_DIR, START_RECORD

MAGIC = "bundler-start-1"


def fingerprint(path):
    """What a change of the keys pinned in the directory `path` changes (pins are written by rename, so the
    directory's times move); None when it cannot be read."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "absent"
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def record_bytes(inst, argv, variables, required):
    """The record's bytes, or None when this start cannot be recorded (a field holds a NUL, a pin directory
    cannot be read): the launcher then always hands over."""
    pins = [fingerprint(os.path.join(inst.root, PINS_DIR)), fingerprint(SHARED_PINS_DIR)]
    if None in pins:
        return None
    fields = [MAGIC, inst.bundle_id, inst.root, *pins, str(len(required)), *required, str(len(argv)), *argv]
    fields += [str(len(variables))] + [f"{name}={value}" for name, value in variables] + ["end"]
    data = [os.fsencode(field) for field in fields]
    if any(b"\0" in field for field in data):
        return None
    return b"\0".join(data) + b"\0"


def record(inst, index):
    """Record how to start the installed version `inst` when nothing is left for a start to do (no image the
    online variant leaves out is missing): the next start may then go without the stub."""
    from stub import images, launch

    if images.missing(inst, index):
        return
    required = [os.path.join(inst.images, image.archive_name) for image in index.images if not image.embedded]
    write(inst, launch.command(index.entrypoint, inst, []), launch.bundle_variables(inst, index), required)


def write(inst, argv, variables, required):
    """Write the version's record unless it already holds these bytes. A record is a shortcut, never a reason not
    to start: a record that cannot be written is left out."""
    data = record_bytes(inst, argv, variables, required)
    path = os.path.join(inst.path, START_RECORD)
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except OSError:
        pass
    try:
        if data is None:
            fs.safe_unlink(path)
        else:
            fs.write_atomic(path, data, durable=False, mode=0o644)
    except (OSError, HostError):
        pass

"""Pulling the images an online variant left out, without holding the runtime back.

By default (`pull = "background"`) a start installs what the bundle embeds, launches a detached puller and execs
the runtime at once. The puller is this bundle run again with an internal option (so it unpacks on its own and
outlives the runtime's exec and the bootloader's temp dir), in a session of its own, reparented to init. It holds
<root>/.pull.lock for its whole life (so there is one per root), the version's shared lock (so --bundle-gc spares
the version), and the install lock only around each rename into BUNDLE_IMAGES. It tries again with backoff until
every image is there; partial blobs stay in <root>/.pulls, so a later run, after a crash or a reboot, resumes
them with Range. BUNDLE_IMAGES/.state says what has arrived; `--bundle-wait-images` waits for it.

`pull = "before-start"` (and --bundle-extract) pull in the foreground, before the runtime starts.
"""

import os
import sys
import time

from payload.errors import BundleError, HostError, NetworkError, NotReady, UsageError
from stub import images, locking
from stub.root import CURRENT, PULL_LOCK, PULL_LOG, PULLS_DIR, Installation, default_root

WORKER = "--bundle-pull-worker"
FIRST_DELAY = 2.0  # seconds before the puller's second round; doubled after each failed round
MAX_DELAY = 60.0
MAX_LOG = 1 << 20  # the puller's log starts again past this size
WAIT_POLL = 0.2  # how often --bundle-wait-images looks for the archives
WAIT_RESTART = 10.0  # how often it makes sure a puller runs


def in_background(index, opts):
    """Whether this start leaves the images it lacks to a background puller."""
    from payload.rules import PULL_BACKGROUND

    return index.pull == PULL_BACKGROUND and not opts.extract


def pull_now(inst, index, opts, environ):
    """Before the runtime starts: pull every image still missing, or fail naming --bundle-no-pull."""
    lock = locking.exclusive(os.path.join(inst.root, PULL_LOCK))  # waits for a background puller of another version
    try:
        todo = images.missing(inst, index)  # another start may have pulled them while we waited
        if not todo:
            return
        pulls = _pulls_dir(inst)
        try:
            with images.registry_client(opts, environ) as client:
                for image in todo:
                    sys.stderr.write(f"{index.name}: pulling {image.ref} ({image.digest[:19]})\n")
                    images.pull_one(client, image, inst, pulls, lambda i, s, d: _set_state(inst, index, i, s, d))
        except NetworkError as exc:
            raise NetworkError(f"{exc} (or start without the images left out: --bundle-no-pull)") from None
        _remove_pulls(pulls)
    finally:
        os.close(lock)


def start_background(inst, opts, executable):
    """Launch the background puller unless one runs in this root; True when one was launched."""
    lock = locking.try_exclusive(os.path.join(inst.root, PULL_LOCK))
    if lock is None:
        return False
    os.close(lock)  # the puller takes it again; a second one launched meanwhile finds it held and leaves
    argv = self_command(executable) + [WORKER, "--bundle-dir", inst.root]
    for value in opts.registry_mirror:
        argv += ["--bundle-registry-mirror", value]
    for value in opts.insecure_registry:
        argv += ["--bundle-insecure-registry", value]
    auth = images.registry_auth(opts, os.environ)
    if auth:  # the path, never the credentials: a command line is readable by every user of the device
        argv += ["--bundle-registry-auth", auth]
    from stub.launch import clean_environment

    spawn_detached(argv, clean_environment(os.environ), os.path.join(inst.root, PULL_LOG))
    return True


def self_command(executable):
    if getattr(sys, "frozen", False):
        return [executable]
    return [sys.executable, "-m", "stub"]  # from the sources: BUNDLE_EXECUTABLE names the bundle, inherited


def spawn_detached(argv, env, log_path):
    """Run `argv` as a grandchild in a new session, stdin from /dev/null, output to `log_path`: the runtime this
    process becomes never sees it as a child (a shell's `wait` would wait for it), init reaps it."""
    try:
        truncate = os.path.getsize(log_path) > MAX_LOG
    except OSError:
        truncate = False
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
    try:
        log = os.open(log_path, flags, 0o644)
    except OSError as exc:
        raise HostError(f"cannot open the log {log_path}: {exc.strerror}; choose a writable --bundle-dir") from None
    null = os.open(os.devnull, os.O_RDONLY)
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        code = 0
        try:
            os.setsid()
            if os.fork() == 0:
                code = 127
                os.dup2(null, 0)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.closerange(3, 65536)  # no lock or pipe of this start outlives it through the puller
                os.chdir("/")
                os.execve(argv[0], argv, env)
        except BaseException:  # noqa: B036 -- a forked child never returns into the caller's code
            pass
        os._exit(code)
    os.close(log)
    os.close(null)
    os.waitpid(child, 0)


def work(payload, opts):
    """The background puller (WORKER): pull this version's missing images until they are all there."""
    index = payload.index
    if not opts.dir:
        raise UsageError(f"{WORKER} is internal: it needs --bundle-dir")
    inst = Installation(opts.dir, payload.bundle_id)
    if not inst.is_installed():
        return 0
    lock = locking.try_exclusive(os.path.join(inst.root, PULL_LOCK))
    if lock is None:
        return 0  # another puller runs in this root
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())
    locking.hold_shared(inst.version_lock())
    pulls = _pulls_dir(inst)
    failures = 0
    while True:
        todo = images.missing(inst, index)
        if not todo:
            break
        if not _is_current(inst):
            _log(f"version {inst.bundle_id[:12]} is no longer current; stopping")
            return 0
        current = todo[0]
        try:
            with images.registry_client(opts, os.environ, progress=False) as client:
                for current in todo:
                    _log(f"pulling {current.ref} ({current.digest[:19]})")
                    images.pull_one(client, current, inst, pulls, lambda i, s, d: _set_state(inst, index, i, s, d))
                    _log(f"{current.name}: ready")
            failures = 0
        except BundleError as exc:
            failures += 1
            delay = min(FIRST_DELAY * 2 ** (failures - 1), MAX_DELAY)
            _set_state(inst, index, current, images.FAILED, f"{exc}; next try in {delay:g} s")
            _log(f"{current.name}: {exc}; next try in {delay:g} s")
            time.sleep(delay)
    _remove_pulls(pulls)
    return 0


def wait(payload, opts, executable, environ):
    """--bundle-wait-images: until the named images (default: all) are in BUNDLE_IMAGES; print their archives."""
    index = payload.index
    by_name = {image.name: image for image in index.images}
    names = opts.wait_images or list(by_name)
    for name in names:
        if name not in by_name:
            known = ", ".join(by_name) or "none"
            raise UsageError(f"--bundle-wait-images: this bundle has no image {name!r} (its images: {known})")
    root = opts.dir or _runtime_root(environ, payload.bundle_id) or default_root(index.name, environ)
    inst = Installation(root, payload.bundle_id)
    if not inst.is_installed():
        raise HostError(
            f"this version is not installed in {inst.root}; start the bundle once (or name its --bundle-dir)"
        )
    deadline = None if opts.timeout is None else time.monotonic() + opts.timeout
    next_check = 0.0
    while True:
        left = [n for n in names if not os.path.exists(os.path.join(inst.images, by_name[n].archive_name))]
        if not left:
            for name in names:
                sys.stdout.write(os.path.join(inst.images, by_name[name].archive_name) + "\n")
            return 0
        now = time.monotonic()
        if now >= next_check and not opts.no_pull:
            start_background(inst, opts, executable)  # after a reboot, or a puller that stopped
            next_check = now + WAIT_RESTART
        if deadline is not None and now >= deadline:
            raise NotReady(_not_ready(inst, left, opts.timeout))
        time.sleep(WAIT_POLL if deadline is None else max(0.0, min(WAIT_POLL, deadline - now)))


def _not_ready(inst, left, timeout):
    states = images.read_state(inst.images)
    last = [f"{n}: {states[n][2]}" for n in left if n in states and states[n][0] == images.FAILED]
    why = f" (last try: {'; '.join(last)})" if last else ""
    return (
        f"image{'s' if len(left) > 1 else ''} {', '.join(left)} not in {inst.images} after {timeout:g} s{why}; "
        f"the background pull goes on (its log: {os.path.join(inst.root, PULL_LOG)})"
    )


def _runtime_root(environ, bundle_id):
    """The install root of the runtime this is called from (its BUNDLE_ROOT names this version), else None."""
    own = environ.get("BUNDLE_ROOT", "")
    return os.path.dirname(own) if own and os.path.basename(own) == bundle_id else None


def _is_current(inst):
    try:
        return os.readlink(os.path.join(inst.root, CURRENT)) == inst.bundle_id
    except OSError:
        return False


def _pulls_dir(inst):
    from payload import fs

    pulls = os.path.join(inst.root, PULLS_DIR)
    try:
        os.makedirs(pulls, exist_ok=True)
    except OSError as exc:
        raise HostError(f"cannot create {pulls}: {exc.strerror}; choose a writable --bundle-dir") from None
    fs.remove_dead_temps(pulls)  # archives a killed puller was writing
    return pulls


def _remove_pulls(pulls):
    import shutil

    shutil.rmtree(pulls, ignore_errors=True)


def _set_state(inst, index, image, state, detail=""):
    """Record one image's state in BUNDLE_IMAGES/.state (the others as they are)."""
    images.write_state(inst.images, index, {image.name: (state, detail)})


def _log(message):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    sys.stderr.write(f"{stamp} pull[{os.getpid()}]: {message}\n")
    sys.stderr.flush()

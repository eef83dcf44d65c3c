"""The run side: find the payload in this executable, install it once, then exec the entrypoint."""

import os
import sys

from stub.root import CURRENT, PROBATION, REFUSED_DIR, Installation, default_root


def _executable():
    return os.path.realpath(sys.executable if getattr(sys, "frozen", False) else os.environ["BUNDLE_EXECUTABLE"])


def _die(prog, exc):
    sys.stderr.write(f"{prog}: error: {exc}\n")
    sys.stderr.flush()
    sys.exit(exc.exit_code)


def main(argv=None):
    from payload.errors import BundleError
    from stub.launch import ARGV0_VAR, close_carried_libc

    close_carried_libc()
    argv = sys.argv if argv is None else argv
    # The launcher starts the bootloader by this file's path; it passes the name the user started it by.
    started_as = os.environ.pop(ARGV0_VAR, None) or (argv[0] if argv else "bundle")
    prog = os.path.basename(started_as)
    try:
        return run(prog, argv[1:])
    except BundleError as exc:
        _die(prog, exc)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug of ours: still one line, never a traceback on a device
        sys.stderr.write(f"{prog}: internal error: {type(exc).__name__}: {exc}; please report this\n")
        sys.exit(1)


def run(prog, args):
    from payload.layout import open_payload
    from stub import options

    opts = options.parse(args)
    if opts.help:
        sys.stdout.write(options.HELP % {"prog": prog})
        return 0
    from stub import leftovers

    # Nothing this run makes under the install root follows a umask that lets others write (000 under some init
    # systems and containers); the runtime gets back the umask it was started with.
    umask = os.umask(0o022)
    os.umask(umask | 0o022)
    leftovers.mark_own_run()  # held until this run (and the runtime it becomes) ends
    leftovers.remove_dead_runs()
    path = _executable()
    with open(path, "rb") as f:
        payload = open_payload(path, f)
        if opts.info or opts.verify:
            from payload.report import describe, verify_payload

            report = describe(payload, opts.json) if opts.info else verify_payload(payload, f, opts.key, options.KEY)
            sys.stdout.write(report + "\n")
            return 0
        if opts.sbom:
            from payload.sbom import read_sbom

            sys.stdout.buffer.write(read_sbom(payload, f))
            sys.stdout.flush()
            return 0
        name = payload.index.name
        if opts.pull_worker or opts.wait_images is not None:
            from stub import pulls

            if opts.pull_worker:
                return pulls.work(payload, opts)
            return pulls.wait(payload, opts, path, os.environ)
        if opts.health_worker or opts.mark_good or opts.status:
            from stub import probation

            root = opts.dir or default_root(name, os.environ)
            if opts.health_worker:
                return probation.health_worker(payload, root)
            if opts.status:
                from stub import status

                sys.stdout.write(status.status(root, name, opts.json) + "\n")
                return 0
            sys.stdout.write(probation.mark_good(root, "--bundle-mark-good") + "\n")
            return 0
        if opts.uninstall:
            from stub import uninstall

            root = opts.dir or default_root(name, os.environ)
            sys.stdout.write(uninstall.uninstall(root, name, opts.purge) + "\n")
            return 0
        if opts.gc:
            from stub import gc

            root = opts.dir or default_root(name, os.environ)
            sys.stdout.write(gc.collect(root, name).summary() + "\n")
            return 0
        if opts.repair:
            from stub import repair

            root = opts.dir or default_root(name, os.environ)
            sys.stdout.write(repair.repair(payload, f, Installation(root, payload.bundle_id)) + "\n")
            return 0
        if opts.rollback:
            from stub import rollback

            root = opts.dir or default_root(name, os.environ)
            sys.stdout.write(rollback.rollback(root, name, path, payload.bundle_id) + "\n")
            return 0
        if opts.update:
            from stub import update

            if opts.check:
                code, line = update.check(payload, opts, os.environ)
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
                if code:
                    sys.exit(code)
                return 0
            sys.stdout.write(update.update(payload, f, path, opts, os.environ) + "\n")
            return 0
        return _install_and_run(payload, f, opts, umask, path, args)


def _ended():
    """The end of an install that runs nothing (--bundle-extract, --bundle-install). The frozen stub leaves at once,
    without the interpreter's shutdown (module teardown, about 6 ms of a first install): what the install wrote is
    fsynced and closed, its threads have ended, and nothing of ours waits on atexit. In-process (tests): returns 0."""
    if getattr(sys, "frozen", False):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _on_probation_or_refused(inst):
    """Whether this start has probation bookkeeping to do: a stat or two (docs/fleet.md, Probation)."""
    return os.path.lexists(os.path.join(inst.root, PROBATION)) or os.path.lexists(
        os.path.join(inst.root, REFUSED_DIR, inst.bundle_id)
    )


def _install_and_run(payload, f, opts, umask, path, args):
    from stub import images, install, launch, locking, owner, rollback, start_record

    index = payload.index
    root = opts.extract or opts.dir or default_root(index.name, os.environ)
    inst = Installation(root, payload.bundle_id)
    first_install = not inst.is_installed()
    # A first install decompresses its largest group from here on, into memory, while the checks before any write
    # run; install.install writes it.
    started = install.start_decompressing(payload, path) if first_install else None
    try:
        if first_install and not opts.extract:  # --bundle-extract only unpacks: it may serve another system
            install.check_glibc(index)
        # Images left out are pulled after the install: in the background (the runtime starts at once), or first.
        pulls = early_import = None
        if not opts.no_pull and images.missing(inst, index):
            from stub import pulls

            if not pulls.in_background(index, opts):
                early_import = images.start_pull_early()  # while the install waits for the disk
        install.prepare_root(inst.root)
        owner.check(inst.root, index.name)
        downgrade = rollback.check_downgrade(inst.root, inst.bundle_id, index, opts.allow_downgrade)
        held = None
        if not (opts.extract or opts.install):
            # Taken before looking, and held by the runtime after exec, so --bundle-gc never removes a version in use.
            held = locking.hold_shared(inst.version_lock())
        installed = inst.is_installed()
        if held is not None and installed and _on_probation_or_refused(inst):
            from stub import probation

            # Counts this start, or becomes the previous version (or the current one, for a version rolled back).
            probation.at_start(inst, index, path, args, held, opts.args, umask)
        key_to_pin = None
        if not installed or opts.key:  # the installed fast path imports and checks nothing more
            from payload.frame_headers import check_frame_headers
            from payload.outside import check_outside
            from stub import trust

            # Before a single file is written: frame headers against the index, the bytes outside the payload
            # section against the index, the signature against trusted keys.
            if not installed:  # an installed version needs no data, nor a split bundle's parts
                data = payload.open_data(f)
                with data.verifying(complete=False):  # a frame damaged in a part names the part
                    check_frame_headers(data, payload)
            check_outside(payload, f)
            key_to_pin = trust.check_before_install(payload, inst.root, opts.key, pin_signer=not opts.no_pin)
        # A crash can leave `current` unset; an allowed downgrade, and --bundle-install, make this version current.
        if not installed or downgrade or opts.install or not os.path.lexists(os.path.join(inst.root, CURRENT)):
            install.install(
                payload, f, inst, after_extract=lambda work: images.write_embedded(work, index), started=started
            )
    finally:
        if started is not None:
            started.cancel()  # the checks refused, or another process installed this version first
    if key_to_pin is not None:
        trust.pin(inst.root, key_to_pin)  # only once the install holds
    if pulls is not None and images.missing(inst, index):
        if pulls.in_background(index, opts):
            pulls.start_background(inst, opts, path)
        else:
            if early_import is not None:
                # Two threads importing at once can each hold a lock the other waits for (an import lock, the
                # lazy-library finder's): the pull imports only once the head start is over.
                early_import.join()
            pulls.pull_now(inst, index, opts, os.environ)
    if opts.extract:
        sys.stdout.write(inst.path + "\n")
        return _ended()
    launch.prepare_data(inst)
    argv = launch.command(index.entrypoint, inst, opts.args)
    if opts.install:
        from stub import repair

        repair.check_installed(inst, index)
        start_record.record(inst, index)  # a service that runs the bundle file then starts without the stub
        sys.stdout.write(launch.shell_command(argv, inst, index) + "\n")
        return _ended()
    env = launch.environment(os.environ, inst, index, path)
    start_record.record(inst, index)
    launch.exec_entrypoint(argv, env, umask)

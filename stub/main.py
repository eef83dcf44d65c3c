"""The run side: find the payload in this executable, install it once, then exec the entrypoint."""

import os
import sys


def _executable():
    return os.path.realpath(sys.executable if getattr(sys, "frozen", False) else os.environ["BUNDLE_EXECUTABLE"])


def _die(prog, exc):
    sys.stderr.write("%s: error: %s\n" % (prog, exc))
    sys.stderr.flush()
    sys.exit(exc.exit_code)


def main(argv=None):
    from payload.errors import BundleError

    argv = sys.argv if argv is None else argv
    prog = os.path.basename(argv[0]) if argv else "bundle"
    try:
        return run(prog, argv[1:])
    except BundleError as exc:
        _die(prog, exc)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug of ours: still one line, never a traceback on a device
        sys.stderr.write("%s: internal error: %s: %s; please report this\n" % (prog, type(exc).__name__, exc))
        sys.exit(1)


def run(prog, args):
    from payload.layout import open_payload

    from . import options

    opts = options.parse(args)
    if opts.help:
        sys.stdout.write(options.HELP % {"prog": prog})
        return 0
    path = _executable()
    with open(path, "rb") as f:
        payload = open_payload(path, f)
        if opts.info or opts.verify:
            from payload.report import describe, verify_all

            sys.stdout.write((describe(payload, opts.json) if opts.info else verify_all(payload, f)) + "\n")
            return 0
        return _install_and_run(payload, f, opts)


def _install_and_run(payload, f, opts):
    from . import images, install, launch, locking

    index = payload.index
    root = opts.extract or opts.dir or install.default_root(index.name, os.environ)
    inst = install.Installation(root, payload.bundle_id)
    if not inst.is_installed():
        install.install(payload, f, inst, after_extract=lambda work: images.write_embedded(work, index))
    images.pull_missing(inst, index, opts, os.environ)
    if opts.extract:
        sys.stdout.write(inst.path + "\n")
        return 0
    # Held by the runtime after exec, so that --bundle-gc never removes a version in use.
    locking.hold_shared(inst.version_lock())
    argv = launch.command(index.entrypoint, inst, opts.args)
    env = launch.environment(os.environ, inst, index)
    launch.exec_entrypoint(argv, env)

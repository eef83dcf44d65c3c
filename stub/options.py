"""The options the stub consumes. They come first; everything from the first other argument (or after `--`)
is passed to the runtime untouched."""

import os

from payload.errors import UsageError

KEY = "--bundle-key"  # also named in advice (payload/report.py, stub/trust.py)
FLAGS = (
    "--bundle-info",
    "--bundle-verify",
    "--bundle-gc",
    "--bundle-no-pull",
    "--bundle-help",
    "--bundle-rollback",
    "--bundle-allow-downgrade",
    "--bundle-repair",
    "--bundle-install",
    "--bundle-no-pin",
    "--bundle-sbom",
    "--bundle-pull-worker",  # internal: the detached background puller a start launches (stub/pulls.py)
    "--bundle-health-worker",  # internal: the detached health check a start on probation launches
    "--bundle-mark-good",
    "--bundle-force",
    "--bundle-status",
    "--bundle-check",
    "--bundle-uninstall",
    "--bundle-purge",
)
VALUED = (
    "--bundle-dir",
    "--bundle-extract",
    KEY,
    "--bundle-registry-mirror",
    "--bundle-insecure-registry",
    "--bundle-registry-auth",
    "--bundle-update-output",
    "--bundle-delta-memory",
)
UPDATE = "--bundle-update"  # a flag with an optional value: --bundle-update [REF]
REPEATABLE = ("--bundle-registry-mirror", "--bundle-insecure-registry")
WAIT = "--bundle-wait-images"  # NAME... [--timeout S]: takes the rest of the command line

HELP = """\
usage: %(prog)s [BUNDLE OPTIONS] [--] [ARGS...]

Installs the bundle once (verified), then runs its entrypoint with ARGS.

bundle options (consumed here, never passed on; they must come before ARGS):
  --bundle-info [--json]          show what this bundle holds and exit
  --bundle-sbom                   print the bundle's SBOM (SPDX or CycloneDX JSON, verified) and exit
  --bundle-verify [--bundle-key PUB]
                                  re-hash every blob (and check the signature) and exit
  --bundle-key PUB                install only if signed by this key
  --bundle-no-pin                 do not pin the signer of this signed bundle (an install or update pins it
                                  in ROOT/.trusted-keys by default; later installs there need a pinned key)
  --bundle-extract DIR            install into DIR and exit, do not run
  --bundle-install [ARGS...]      install and verify, then print the installed entrypoint's command line
                                  (shell-quoted, with its BUNDLE_* variables) for a service manager; run nothing
  --bundle-dir DIR                install root (env BUNDLE_DIR; default /var/lib/NAME as root,
                                  ~/.local/share/NAME otherwise)
  --bundle-gc                     remove installed versions other than current and previous
  --bundle-uninstall [--bundle-purge]
                                  remove the installed versions, kept bundle files, pins and records of this
                                  root (and its data with --bundle-purge); refused while it runs; and exit
  --bundle-rollback               make the previous version current again (and current previous), and exit
  --bundle-repair                 re-verify this version's installed files, restore any that differ, and exit
  --bundle-update [REF]           replace this file with the version REGISTRY/REPO:TAG holds (default: the
                                  manifest's [update] repository), fetching only what changed; signature checked
                                  first; installs it as current, runs nothing (docs/fleet.md)
  --bundle-check                  with --bundle-update: only say whether REF holds an update (exit 0: up to
                                  date, 7: an update is available, 5: unreachable); fetch nothing more
  --bundle-force                  with --bundle-update: install a version this device rolled back on its own
  --bundle-mark-good              end the probation of the current version after an update (docs/fleet.md)
  --bundle-status [--json]        current and previous versions, probation, last update and rollback, pins,
                                  disk used; and exit
  --bundle-update-output PATH     with --bundle-update: write the new file to PATH instead of over this one
  --bundle-delta-memory SIZE      with --bundle-update: the most memory a delta may take (env
                                  BUNDLE_DELTA_MEMORY; default 256M; 0: fetch changed groups whole)
  --bundle-allow-downgrade        run this bundle even though it is older than the current version
                                  (it then becomes current)
  --bundle-no-pull                do not pull the images the online variant left out
  --bundle-wait-images [NAME...] [--timeout S]
                                  wait until these images (default: all) are in BUNDLE_IMAGES, starting the
                                  background pull if none runs; print their archives; exit 6 after S seconds
  --bundle-registry-mirror HOST[:PORT]   try this registry first (repeatable; env BUNDLE_REGISTRY_MIRRORS)
  --bundle-insecure-registry HOST:PORT   allow plain http to this registry (repeatable)
  --bundle-registry-auth FILE     registry credentials: a docker config.json (env BUNDLE_REGISTRY_AUTH;
                                  default REGISTRY_AUTH_FILE, else ~/.docker/config.json)
  --bundle-help                   this text

exit codes: 0 (or the runtime's own), 2 usage, 3 integrity, 4 environment, 5 network or registry,
6 images still missing when --bundle-wait-images timed out, 7 --bundle-check: an update is available
"""


def check_registry_auth(path, where):
    """Refuse (exit 2) registry credentials named by `where` that are not a file."""
    if not os.path.isfile(path):
        raise UsageError(f"{where} {path}: no such file; give the path of a docker config.json")


class Options:
    def __init__(self):
        self.info = self.json = self.verify = self.gc = self.no_pull = self.help = False
        self.rollback = self.allow_downgrade = self.repair = self.install = self.pull_worker = self.no_pin = False
        self.health_worker = self.mark_good = self.force = self.status = self.check = False
        self.uninstall = self.purge = self.sbom = False
        self.wait_images = self.timeout = None
        self.dir = self.extract = self.key = self.update = self.update_output = self.delta_memory = None
        self.registry_auth = None
        self.registry_mirror = []
        self.insecure_registry = []
        self.args = []


def _wait_arguments(rest):
    """The image names and the timeout (seconds, or None: no limit) after --bundle-wait-images."""
    names, timeout = [], None
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--timeout" or arg.startswith("--timeout="):
            if "=" in arg:
                value = arg.partition("=")[2]
            elif i + 1 < len(rest):
                i += 1
                value = rest[i]
            else:
                raise UsageError("--timeout needs a number of seconds")
            try:
                timeout = float(value)
            except ValueError:
                timeout = -1.0
            if not timeout >= 0 or timeout == float("inf"):
                raise UsageError(f"--timeout {value!r} is not a number of seconds; write e.g. --timeout 300")
        elif arg.startswith("-"):
            raise UsageError(f"{WAIT} takes image names and --timeout S, not {arg}")
        else:
            names.append(arg)
        i += 1
    return names, timeout


def parse(argv):
    """Split argv (without the program name) into stub Options and the runtime's args."""
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg == "--json" and (opts.info or opts.status):
            opts.json = True
            i += 1
            continue
        name, eq, value = arg.partition("=")
        if not name.startswith("--bundle-"):
            break
        attr = name[len("--bundle-") :].replace("-", "_")
        if name == WAIT and not eq:
            opts.wait_images, opts.timeout = _wait_arguments(argv[i + 1 :])
            i = len(argv)
            break
        if name == UPDATE:
            if eq:
                opts.update = value or True
            elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                i += 1
                opts.update = argv[i]
            else:
                opts.update = True
        elif name in FLAGS and not eq:
            setattr(opts, attr, True)
        elif name in VALUED:
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"{name} needs a value")
                i += 1
                value = argv[i]
            if not value:
                raise UsageError(f"{name} needs a non-empty value")
            if name in REPEATABLE:
                getattr(opts, attr).append(value)
            else:
                setattr(opts, attr, value)
        else:
            raise UsageError(f"unknown option {name}; see --bundle-help (put `--` before ARGS meant for the runtime)")
        i += 1
    opts.args = list(argv[i:])
    for flag, given in (("--bundle-force", opts.force), ("--bundle-check", opts.check)):
        if given and not opts.update:
            raise UsageError(f"{flag} goes with --bundle-update")
    if opts.purge and not opts.uninstall:
        raise UsageError("--bundle-purge goes with --bundle-uninstall")
    if opts.update_output and not opts.update:
        raise UsageError("--bundle-update-output goes with --bundle-update")
    if opts.delta_memory is not None:
        if not opts.update:
            raise UsageError("--bundle-delta-memory goes with --bundle-update")
        from payload.delta import memory_bound

        memory_bound(option=opts.delta_memory)  # a bad size is refused now, before any request
    if opts.registry_auth is not None:
        check_registry_auth(opts.registry_auth, "--bundle-registry-auth")
    if opts.insecure_registry or opts.registry_mirror:  # checked now, not only when an image is pulled
        from payload.oci.reference import parse_insecure_registry, parse_registry_host

        for value in opts.insecure_registry:
            parse_insecure_registry(value, "--bundle-insecure-registry")
        for value in opts.registry_mirror:
            parse_registry_host(value, "--bundle-registry-mirror")
    return opts

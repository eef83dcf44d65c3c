"""The `bundler` command line."""

import json
import signal
import sys
from pathlib import Path

import click

from bundler import __version__
from bundler.build.cuts import DEFAULT_FRAME_SIZE, DEFAULT_LEVEL
from payload.arches import NAMES as ARCHES
from payload.errors import BundleError, UsageError
from payload.index import LAYER_MODES, LAYERS_RAW
from payload.rules import SBOM_FORMATS

LEVEL = click.IntRange(1, 22)
ARCH = click.Choice(ARCHES)


class _StubType(click.Path):
    """A stub file, or the word `host`."""

    name = "stub"

    def convert(self, value, param, ctx):
        if value in ("host", "static"):
            return value
        return super().convert(value, param, ctx)


STUB = _StubType(exists=True, dir_okay=False, path_type=Path)


class _Size(click.ParamType):
    """A size with K, M, G suffixes (powers of 1024): 700M, 2G; at least `minimum` (default: the smallest part)."""

    name = "SIZE"

    def __init__(self, minimum=None):
        self.minimum = minimum

    def convert(self, value, param, ctx):
        from bundler.media.split import parse_size

        if isinstance(value, int):
            return value
        try:
            return parse_size(value, "--" + param.name.replace("_", "-"), self.minimum)
        except BundleError as exc:
            self.fail(exc.message, param, ctx)


SIZE = _Size()
FRAME_SIZE = _Size(minimum=1 << 20)


def _log(message):
    click.echo(message, err=True)


class _Group(click.Group):
    """The one top-level handler: every failure is one line on stderr and an exit code, never a traceback."""

    def invoke(self, ctx):
        previous = signal.signal(signal.SIGTERM, _terminated)  # unwinds like Ctrl-C, so temp files are removed
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click prints its usage errors itself (exit 2)
        except BundleError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, _Terminated)
            _fail(
                f"{'terminated' if terminated else 'interrupted'}; nothing was left half-written",
                143 if terminated else 130,
            )
        except OSError as exc:  # one our code did not name: still the environment's
            where = f" ({exc.filename})" if exc.filename else ""
            _fail(f"{exc.strerror or exc}{where}; check the path, free space and permissions", 4)
        except Exception as exc:  # a bug of ours
            _fail(
                f"internal error: {type(exc).__name__}: {exc}; please report this with the command line (bundler "
                f"{__version__})",
                1,
            )
        finally:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C (exit 143)."""


def _terminated(signum, frame):
    raise _Terminated()


def _fail(message, code):
    click.echo(f"bundler: error: {message}", err=True)
    sys.exit(code)


def _cache(cache_dir):
    from bundler.cache import Cache

    return Cache(cache_dir)


manifest_option = click.option(
    "--manifest",
    "-m",
    type=click.Path(path_type=Path),
    default=Path("bundle.toml"),
    show_default=True,
    help="The bundle manifest.",
)
arch_option = click.option("--arch", type=ARCH, help="Target architecture (default: this host's).")
cache_option = click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    envvar="BUNDLER_CACHE_DIR",
    help="Download and build cache (default: ~/.cache/bundler).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout (for CI).")
mirror_option = click.option(
    "--mirror",
    metavar="URL",
    envvar="BUNDLER_DEBIAN_MIRROR",
    help="Debian mirror for building portable stubs (default: the host's apt sources).",
)


def _insecure_registries(ctx, param, values):
    from payload.oci.reference import parse_insecure_registry

    return tuple(parse_insecure_registry(v, "--insecure-registry") for v in values)


insecure_option = click.option(
    "--insecure-registry",
    "insecure_registries",
    multiple=True,
    metavar="HOST:PORT",
    callback=_insecure_registries,
    help="Allow plain http to this registry (repeatable).",
)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="bundler")
def main():
    """Turn binaries and container images into one self-extracting executable."""


@main.command()
@manifest_option
@click.option("--variant", help="Variant from the manifest (default: its first).")
@arch_option
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Default: dist/NAME-VERSION-VARIANT-ARCH.")
@cache_option
@click.option(
    "--stub",
    type=STUB,
    envvar="BUNDLER_STUB",
    metavar="PATH|host|static",
    help="A stub prebuilt with `bundler stub`, `host` for one built from this host's Python (needs this "
    "host's glibc on the device), or `static` for the portable stub with the C library it runs on (starts on any "
    "Linux: musl, busybox, an old glibc; about 4 MB more). Default: the portable stub for --arch, built once in a "
    "Debian root.",
)
@mirror_option
@click.option("--level", type=LEVEL, default=DEFAULT_LEVEL, show_default=True, help="zstd compression level.")
@click.option(
    "--locked",
    is_flag=True,
    help="Refuse any source or image that the lock (bundle.toml: bundle.lock) or the manifest does not pin, and a "
    "stub other than the one the lock pins.",
)
@click.option("--offline", is_flag=True, envvar="BUNDLER_OFFLINE", help="Use only the cache; never touch the network.")
@insecure_option
@click.option(
    "--layers",
    type=click.Choice(LAYER_MODES),
    default=LAYERS_RAW,
    show_default=True,
    help="raw: store image layers uncompressed (smaller, keeps the image id); exact: keep the registry's "
    "blobs byte for byte (keeps the manifest digest).",
)
@click.option(
    "--sign",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="KEY",
    help="Sign the bundle with this private key (from `bundler keygen`).",
)
@click.option(
    "--require-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="PUB",
    help="Make the bundle refuse to install unless signed by this key (needs --sign with its pair).",
)
@click.option(
    "--split",
    type=SIZE,
    help="Put the data in OUTPUT.part001, ... of at most SIZE each (e.g. 2G, for "
    "FAT32 media); the executable finds them beside itself.",
)
@click.option(
    "--frame-size",
    type=FRAME_SIZE,
    default=DEFAULT_FRAME_SIZE,
    show_default=f"{DEFAULT_FRAME_SIZE >> 20}M",
    help="Cut a group of at least twice SIZE into frames of at least SIZE (between files), which devices "
    "decompress at once: smaller installs faster on several cores, and stores more.",
)
@click.option(
    "--sbom-format",
    type=click.Choice(SBOM_FORMATS),
    help="The SBOM put inside the bundle and beside it: spdx (SPDX 2.3 JSON) or cyclonedx (CycloneDX 1.6 "
    "JSON). Default: the manifest's [bundle] sbom, else spdx.",
)
@json_option
def make(
    manifest,
    variant,
    arch,
    output,
    cache_dir,
    stub,
    mirror,
    level,
    locked,
    offline,
    insecure_registries,
    layers,
    sign,
    require_key,
    split,
    frame_size,
    sbom_format,
    as_json,
):
    """Build the bundle executable."""
    from bundler.build.make import MakeRequest
    from bundler.build.make import make as run_make

    request = MakeRequest(
        manifest=manifest,
        variant=variant,
        arch=arch,
        output=output,
        stub=stub,
        mirror=mirror,
        level=level,
        locked=locked,
        offline=offline,
        insecure_registries=tuple(insecure_registries),
        layers=layers,
        sign=sign,
        require_key=require_key,
        split=split,
        frame_size=frame_size,
        sbom_format=sbom_format,
    )
    output, index = run_make(request, _cache(cache_dir), log=_log)
    if as_json:
        click.echo(json.dumps(_made(output, index), indent=2, sort_keys=True))
        return
    click.echo(_summary(output, index))


def _summary(output, index):
    stored = output.stat().st_size + sum(p.size for p in index.parts)
    parts = f", {len(index.parts)} parts beside it" if index.parts else ""
    return f"{output}  ({index.variant}, {stored / 1e6:.1f} MB stored{parts}, bundle id {index.bundle_id[:16]})"


@main.command()
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--size", required=True, type=SIZE, help="Largest part (K, M, G: powers of 1024), e.g. 2G.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Default: BUNDLE itself (it becomes the executable, its parts and BUNDLE.sha256 go beside it).",
)
def split(bundle, size, output):
    """Split a bundle already made into its executable and parts of at most SIZE (no key needed: the bundle id
    and the signature stay)."""
    from bundler.commands import split_bundle

    output = output or bundle
    click.echo(_summary(output, split_bundle(bundle, size, output)))


@main.command()
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--level", type=LEVEL, default=DEFAULT_LEVEL, show_default=True, help="zstd compression level.")
@click.option(
    "--frame-size",
    type=FRAME_SIZE,
    default=DEFAULT_FRAME_SIZE,
    show_default=f"{DEFAULT_FRAME_SIZE >> 20}M",
    help="Cut a group of at least twice SIZE into frames of at least SIZE (as make --frame-size).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Default: BUNDLE itself (replaced once the new one is written and read back).",
)
@cache_option
def repack(bundle, level, frame_size, output, cache_dir):
    """Compress a bundle already made again, at another level or frame size (no key needed: the bundle id and
    the signature stay). A split bundle comes out whole; split it again with `bundler split`."""
    from bundler.commands import repack_bundle

    output = output or bundle
    click.echo(_summary(output, repack_bundle(bundle, output, _cache(cache_dir), level, frame_size, log=_log)))


def _made(output, index):
    """What `make --json` prints: where the bundle is, its checksum, and what it holds."""
    from bundler.media.outputs import checksum_path, provenance_path, read_checksums

    checksum = checksum_path(output)
    listed = read_checksums(output)
    return {
        "output": str(output),
        "checksum_file": str(checksum),
        "sha256": listed[output.name],
        "size": output.stat().st_size,
        "bundle_id": index.bundle_id,
        "name": index.name,
        "version": index.version,
        "variant": index.variant,
        "arch": index.arch,
        "groups": [{"name": g.name, "size": g.size, "stored": g.csize, "frames": len(g.frames)} for g in index.groups],
        "images": [i.name for i in index.images],
        "parts": [p.to_json() for p in index.parts],
        "sbom": _beside_sbom(output, index),
        "provenance": str(provenance_path(output)),
    }


def _beside_sbom(output, index):
    """The SBOM file make wrote beside `output` (its format is the one of the entry inside)."""
    from bundler.media.outputs import sbom_path
    from payload.rules import SBOM_PATHS
    from payload.sbom import sbom_entry

    entry = sbom_entry(index)
    formats = [name for name, path in SBOM_PATHS.items() if entry is not None and path == entry.path]
    return str(sbom_path(output, formats[0])) if formats else None


@main.command()
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dest_dir", type=click.Path(path_type=Path))
@click.option("--split", type=SIZE, help="Cut the bundle into parts of at most SIZE on the way (e.g. 2G for FAT32).")
def copy(bundle, dest_dir, split):
    """Copy a bundle (its parts and its .sha256) to a medium, read it all back and verify it; run again to resume."""
    from bundler.media.copy import copy_bundle
    from payload import progress as progress_display

    display = progress_display.callback()  # a bar on a terminal only
    try:
        copy_bundle(bundle, dest_dir, split=split, progress=display, log=click.echo)
    finally:
        progress_display.finish(display)


@main.command()
@manifest_option
@arch_option
@click.option("--all-arches", is_flag=True, help="Fetch the sources of every architecture.")
@click.option("--stubs", is_flag=True, help="Also build (or find) the portable stub of each of those architectures.")
@mirror_option
@cache_option
@insecure_option
def fetch(manifest, arch, all_arches, stubs, mirror, cache_dir, insecure_registries):
    """Fill the cache without building, for a later `make --offline` on an air-gapped host."""
    from bundler.commands import fetch_all

    fetch_all(manifest, arch, all_arches, _cache(cache_dir), insecure_registries, log=_log, stubs=stubs, mirror=mirror)


@main.command()
@manifest_option
@click.option(
    "--arch",
    "arches",
    type=ARCH,
    multiple=True,
    help="Architectures to pin (default: every one the manifest has sources for).",
)
@click.option("--stubs", is_flag=True, help="Also build (or find) the portable stub of each architecture, and pin it.")
@click.option(
    "--stub",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="PATH",
    help="Pin this prebuilt stub (for `make --stub PATH`) for its architecture instead of the portable one.",
)
@mirror_option
@cache_option
@insecure_option
def lock(manifest, arches, stubs, stub, mirror, cache_dir, insecure_registries):
    """Download every source once and pin its sha256 (and every image's digest) in the lock beside the manifest
    (bundle.toml: bundle.lock, prod.toml: prod.lock); pin each architecture's stub once it is built."""
    from bundler.commands import write_lock

    path = write_lock(
        manifest, arches, _cache(cache_dir), insecure_registries, log=_log, stubs=stubs, stub=stub, mirror=mirror
    )
    click.echo(str(path))


@main.command()
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the index as JSON.")
@click.option("--sbom", is_flag=True, help="Print the SBOM the bundle carries (SPDX or CycloneDX JSON), verified.")
def inspect(bundle, as_json, sbom):
    """Show what a bundle holds, without running it."""
    from bundler.commands import inspect_bundle

    if as_json and sbom:
        raise UsageError("--json and --sbom print different documents; pass one of them")
    click.echo(inspect_bundle(bundle, as_json, sbom), nl=not sbom)


@main.command()
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Print the difference as JSON.")
@click.option("--arch", type=ARCH, help="The architecture to compare from a tag that holds several.")
@click.option("--variant", help="The variant to compare from a tag that holds several of one architecture.")
@click.option(
    "--delta",
    is_flag=True,
    help="Of two bundle files: make the patches `push --delta-from OLD` would publish, to say what an update with a "
    "delta fetches (a pushed NEW answers from the delta published beside it, without this).",
)
@insecure_option
def diff(old, new, as_json, arch, variant, delta, insecure_registries):
    """What changed from bundle OLD to bundle NEW (each a bundle file or a registry reference REGISTRY/REPO:TAG):
    files, images and groups added, removed or changed (with sizes), what an update from OLD to NEW fetches whole
    and with a delta, and the packages their SBOMs list. Of a reference, only its index, its SBOM and its delta
    manifest are fetched."""
    from bundler.build.make import registry_client
    from bundler.fleet.diff import diff as run_diff
    from bundler.fleet.diff import render

    with registry_client(insecure_registries) as client:
        click.echo(render(run_diff(old, new, client, arch, variant, delta), as_json))


@main.command()
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="PUB",
    help="Also require a valid signature by this public key.",
)
@json_option
def verify(bundle, key, as_json):
    """Re-hash every blob of a bundle (and check its signature), without running it."""
    from bundler.commands import verify_bundle

    click.echo(verify_bundle(bundle, key, as_json))


@main.command()
@click.option(
    "--out",
    "prefix",
    type=click.Path(path_type=Path),
    default=Path("bundle-signing"),
    show_default=True,
    metavar="PREFIX",
    help="Writes PREFIX.key (private, mode 0600) and PREFIX.pub.",
)
def keygen(prefix):
    """Make an ed25519 key pair for `make --sign` and `--require-key`."""
    from bundler.build.signing import generate_keypair

    key_path, pub_path, fingerprint = generate_keypair(prefix)
    click.echo(f"{key_path}\n{pub_path}\nkey {fingerprint}")


@main.command()
@click.option("--arch", type=ARCH, help="Target architecture (default: this host's).")
@click.option(
    "--host",
    "host_python",
    is_flag=True,
    help="Build from this host's own Python instead (quick, but the device then needs this host's glibc).",
)
@click.option(
    "--static",
    "static",
    is_flag=True,
    help="The portable stub with the C library it runs on: starts on any Linux of ARCH (musl, busybox, old glibc).",
)
@mirror_option
@cache_option
def stub(arch, host_python, static, mirror, cache_dir):
    """Build (or find in the cache) a stub and print its path: by default the portable stub for ARCH, built in
    a Debian root of that architecture."""
    from bundler.arch import host_arch
    from bundler.build.glibc import describe_floor

    cache = _cache(cache_dir)
    if host_python and static:
        raise UsageError("--host and --static exclude each other: a static stub is built from the portable one")
    if host_python:
        if arch not in (None, host_arch()):
            raise UsageError(f"--host builds for this {host_arch()} host only; drop --arch {arch} or --host")
        from bundler.stubs.build import host_stub

        path = host_stub(cache, log=_log)
    else:
        from bundler.stubs.portable import portable_stub

        path = portable_stub(cache, arch or host_arch(), mirror=mirror, log=_log)
        if static:
            from bundler.stubs.static import static_stub

            path = static_stub(cache, arch or host_arch(), mirror=mirror, log=_log)
    _log(f"stub glibc floor: {describe_floor(path)}")
    click.echo(str(path))


@main.command()
@click.argument("bundles", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("target", metavar="REGISTRY/REPO:TAG")
@click.option(
    "--delta-from",
    "delta_from",
    multiple=True,
    metavar="OLD",
    help="Also publish a delta from this older bundle (a file or a registry reference; repeatable): a "
    "patch per changed group, which a device on OLD applies instead of fetching the group.",
)
@click.option(
    "--delta-level",
    type=click.IntRange(1, 22),
    default=None,
    hidden=True,
    help="No longer needed: a device checks a patch's content against the signed index and encodes it again itself.",
)
@insecure_option
def push(bundles, target, delta_from, delta_level, insecure_registries):
    """Push BUNDLES (one version, any architectures) to REGISTRY/REPO:TAG as OCI artifacts under one image index;
    architectures already under the tag for that version are kept. Blobs the registry has are not sent again."""
    from bundler.build.make import registry_client
    from bundler.fleet.push import push as push_bundles

    if delta_level is not None:
        _log("note: --delta-level is no longer needed and is ignored; a delta fits a bundle made at any level")
    with registry_client(insecure_registries) as client:
        digest, count = push_bundles(bundles, target, client, log=_log, delta_from=delta_from)
    click.echo(f"{target}  {digest} ({count} bundle{'' if count == 1 else 's'})")


@main.command()
@click.argument("reference", metavar="REF")
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the executable goes (its .sha256 beside it).",
)
@click.option("--arch", type=ARCH, help="The architecture to pull from a tag that holds several.")
@click.option("--variant", help="The variant to pull from a tag that holds several of one architecture.")
@click.option(
    "--registry-mirror",
    "mirrors",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Fetch blobs from this registry first (repeatable).",
)
@click.option(
    "--sbom",
    is_flag=True,
    help="Also fetch the SBOM and the provenance attached to the bundle (by `bundler push`) and write them beside "
    "OUTPUT, checked against the bundle's signed index.",
)
@insecure_option
def pull(reference, output, arch, variant, mirrors, sbom, insecure_registries):
    """Rebuild the bundle REF names, byte for byte the executable that was pushed, at OUTPUT."""
    from bundler.build.make import registry_client
    from bundler.fleet.pull import pull as pull_bundle

    with registry_client(insecure_registries, mirrors) as client:
        pull_bundle(reference, output, client, arch=arch, variant=variant, log=click.echo, sbom=sbom)

"""`bundler make`: manifest -> sources -> compressed groups -> one executable."""

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from bundler.arch import host_arch
from bundler.build import provenance
from bundler.build.abi import check_files, check_stub_floor, describe_libs
from bundler.build.assemble import build_index, stub_sha256_of, write_bundle
from bundler.build.compress import compress_all
from bundler.build.cuts import DEFAULT_FRAME_SIZE, DEFAULT_LEVEL
from bundler.build.glibc import format_version, stub_floor
from bundler.build.signing import Signing
from bundler.build.sources import gather_files
from bundler.images.embed import embed_images, pin_images
from bundler.manifest import load_manifest
from bundler.manifest.lockfile import Lock, check_stub_pin, lock_path_for
from bundler.manifest.model import IMAGES_GROUP
from bundler.media import outputs
from bundler.media.outputs import checksum_path, read_checksums
from bundler.sbom import gather as sbom
from bundler.stubs.build import HOST, STATIC
from payload import fs
from payload.elf import elf_machine, find_section
from payload.errors import UsageError, write_error
from payload.index import LAYERS_RAW
from payload.rules import SBOM_GROUP


@dataclass
class MakeRequest:
    manifest: Path = Path("bundle.toml")
    variant: Optional[str] = None
    arch: Optional[str] = None
    output: Optional[Path] = None
    stub: Optional[Path] = None  # a prebuilt stub, or "host" (this host's Python); default: portable
    mirror: Optional[str] = None  # Debian mirror for building the portable stub
    level: int = DEFAULT_LEVEL
    locked: bool = False
    offline: bool = False
    insecure_registries: tuple = field(default_factory=tuple)
    layers: str = LAYERS_RAW
    sign: Optional[Path] = None  # private key to sign the index with
    require_key: Optional[Path] = None  # public key the bundle will demand a signature by
    split: Optional[int] = None  # part size: the data area goes to OUTPUT.part001, ... (bundler/media/split.py)
    frame_size: int = (
        DEFAULT_FRAME_SIZE  # a group is cut into frames of at least this much input (bundler/build/cuts.py)
    )
    sbom_format: Optional[str] = None  # "spdx" or "cyclonedx"; default: the manifest's [bundle] sbom


def check_prebuilt_stub(path, arch):
    """A prebuilt stub must be a PyInstaller one-file ELF of the target architecture."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read stub {path}: {exc.strerror}") from None
    with f:
        machine = elf_machine(f)
        if machine != arch:
            raise UsageError(f"stub {path} is built for {machine}, not {arch}; pass a stub of the target architecture")
        if find_section(f, "pydata") is None:
            raise UsageError(f"stub {path} has no PyInstaller `pydata` section; build it with `bundler stub`")


def stub_plan(request, cache, arch, log=print):
    """Check now that a stub for `arch` can be had; returns the function that gets it (a build can take minutes)."""
    if request.stub == HOST:
        if arch != host_arch():
            raise UsageError(
                f"--stub host builds for this {host_arch()} host only; for {arch} drop --stub (the portable stub) or "
                f"pass a stub built for {arch}"
            )
        from bundler.stubs.build import host_stub

        return lambda: host_stub(cache, log=log)
    if request.stub not in (None, STATIC):
        check_prebuilt_stub(request.stub, arch)
        return lambda: Path(request.stub)
    from bundler.stubs.portable import check_can_build, portable_stub

    check_can_build(cache, arch, request.offline, request.mirror)
    if request.stub == STATIC:
        from bundler.stubs.static import static_stub

        return lambda: static_stub(cache, arch, mirror=request.mirror, offline=request.offline, log=log)
    return lambda: portable_stub(cache, arch, mirror=request.mirror, offline=request.offline, log=log)


def registry_client(insecure_registries=(), mirrors=()):
    """The build host's registry client, for make, lock, push and pull (requests is imported only when a registry is
    used)."""
    from payload.oci.registry import RegistryClient

    return RegistryClient(insecure_registries=tuple(insecure_registries), mirrors=tuple(mirrors))


def default_output(manifest, variant, arch):
    return Path("dist") / (f"{manifest.name}-{manifest.version}-{variant}-{arch}")


def make(request, cache, log=print):
    """Build the bundle; returns (output path, index)."""
    manifest = load_manifest(request.manifest)
    variant = manifest.variant(request.variant)
    arch = request.arch or host_arch()
    manifest.check_arch(arch)
    get_stub = stub_plan(request, cache, arch, log)
    signing = Signing.from_paths(request.sign, request.require_key)  # before the long part: a bad key fails now
    lock_path = lock_path_for(manifest.path)
    output = Path(request.output) if request.output else default_output(manifest, variant.name, arch)
    check_output(output, _inputs(request, manifest, lock_path, arch))  # before the long part too
    lock = Lock.load(lock_path)
    started = datetime.now(timezone.utc)
    fetched = {}  # path: sha256 of its source, for the provenance
    members_by_group = gather_files(
        manifest, arch, lock, cache, locked=request.locked, offline=request.offline, fetched=fetched
    )
    abi = check_files(members_by_group, arch, manifest.min_glibc, manifest.host_libs)
    with registry_client(request.insecure_registries) as client:
        # Offline, a tag cannot be resolved: every image must be pinned (and its blobs come from the cache).
        pinned = pin_images(manifest, variant, lock, arch, client, request.locked or request.offline, log=log)
        image_members, image_records = embed_images(pinned, client, cache, request.layers, log=log)
        images = sbom.image_items(image_records, cache, None if request.offline else client)
    files = sbom.file_items(manifest, arch, members_by_group)
    if image_members:
        members_by_group[IMAGES_GROUP] = image_members
    stub = get_stub()
    stub_digest = stub_sha256_of(stub, output)
    if request.locked:
        check_stub_pin(lock, arch, stub, stub_digest)
    sbom_format = request.sbom_format or manifest.sbom
    sbom_text = sbom.render(
        sbom.describe(
            manifest, variant.name, arch, files, images, sbom.stub_item(stub, *_stub_kind(request, cache, arch))
        ),
        sbom_format,
    )
    members_by_group[SBOM_GROUP] = [sbom.sbom_member(cache, sbom_format, sbom_text)]
    floor = stub_floor(stub)[0]
    check_stub_floor(floor, manifest.min_glibc, stub)
    min_glibc, min_glibc_file = bundle_floor(floor, abi, manifest.min_glibc, log)
    if abi.host_libs:
        log(f"libraries the target must provide ([bundle] host_libs): {describe_libs(abi.host_libs)}")
    groups = compress_all(cache, list(members_by_group.items()), request.level, log=log, frame_size=request.frame_size)
    identity = {
        "name": manifest.name,
        "version": manifest.version,
        "variant": variant.name,
        "arch": arch,
        "entrypoint": list(manifest.entrypoint),
        "description": manifest.description,
        "update_repository": manifest.update_repository,
        "pull": variant.pull,
        "update_policy": manifest.update_policy,
    }
    index = build_index(
        identity,
        groups,
        images=image_records,
        require_key=signing.require_key_id,
        min_glibc=min_glibc,
        min_glibc_file=min_glibc_file,
        stub_sha256=stub_digest,
    )
    try:
        if request.split:
            from bundler.media.split import stub_source, write_split

            source = stub_source(
                stub, index, {g.name: g.path for g in groups}, signing.signature_block(index.to_bytes())
            )
            index = write_split(source, output, request.split)
        else:
            write_bundle(stub, index, groups, output, sign=signing.signature_block)
        sbom_path = outputs.sbom_path(output, sbom_format)
        # An SBOM of the other format, left by an earlier make of this output, describes another build.
        outputs.remove_stale_side_files(output, keep=(sbom_path, outputs.provenance_path(output)))
        fs.write_atomic(sbom_path, sbom_text)
        doc = provenance.statement(
            read_checksums(output),
            _parameters(request, manifest, variant.name, arch, sbom_format, signing),
            manifest,
            lock_path,
            files,
            fetched,
            images,
            stub,
            [sbom_path],
            started,
        )
        fs.write_atomic(outputs.provenance_path(output), json.dumps(provenance.envelope(doc, signing), indent=2) + "\n")
    except OSError as exc:
        raise _output_error(output, exc) from None
    return output, index


def _parameters(request, manifest, variant, arch, sbom_format, signing):
    """The provenance's externalParameters: what the caller chose (docs/sbom.md, Provenance)."""
    return {
        "manifest": str(request.manifest),
        "name": manifest.name,
        "version": manifest.version,
        "variant": variant,
        "arch": arch,
        "level": request.level,
        "layers": request.layers,
        "frame_size": request.frame_size,
        "split": request.split,
        "locked": request.locked,
        "offline": request.offline,
        "stub": "portable" if request.stub is None else request.stub if request.stub in (HOST, STATIC) else "prebuilt",
        "sbom": sbom_format,
        "require_key": signing.require_key_id,
    }


def bundle_floor(stub_needs, abi, min_glibc=None, log=print):
    """(min_glibc, the file that sets it or None) for the index: the higher of the stub's floor and the files'."""
    files_needs, path = abi.floor
    by_files = bool(files_needs and (not stub_needs or files_needs > stub_needs))
    floor = files_needs if by_files else stub_needs
    line = (
        f"glibc floor: {format_version(floor)} (stub {format_version(stub_needs)}, files {format_version(files_needs)})"
    )
    if by_files:
        line += (
            f"; the files need more than the stub ({path} needs {format_version(files_needs)}): the bundle refuses "
            "to install on an older glibc"
        )
    if not min_glibc:
        line += "; set [bundle] min_glibc to enforce one"
    log(line)
    return (format_version(floor) if floor else None), (path if by_files else None)


def _stub_kind(request, cache, arch):
    """(kind, Debian root it was built in) of the stub, for its SBOM components (bundler/sbom/stub.py)."""
    if request.stub == HOST:
        return "host", None
    if request.stub == STATIC:
        return "static", None  # recorded beside the stub when it was put together
    if request.stub is not None:
        return "prebuilt", None
    from bundler.stubs import debian

    return "portable", debian.root_dir(cache, debian.target(arch))


def _inputs(request, manifest, lock_path, arch):
    """Every file `make` reads that a user names: an output equal to one of them is refused."""
    from bundler.build.download import is_local, local_path

    paths = [
        request.manifest,
        lock_path,
        None if request.stub in (HOST, STATIC) else request.stub,
        request.sign,
        request.require_key,
    ]
    for spec in manifest.files:
        url = manifest.resolve_url(manifest.source_for(spec, arch))
        if is_local(url):
            paths.append(local_path(url))
    paths += [spec.archive_path for spec in manifest.images if spec.transport]
    return [Path(p) for p in paths if p is not None]


def _same_file(a, b):
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(output, inputs):
    """Refuse an output path that names a directory, something other than a file, or an input of the build (or
    whose checksum or side files would), and one that cannot be written, before any long step."""
    output = Path(output)
    checksum = checksum_path(output)
    if output.is_dir():
        raise UsageError("--output {} is a directory; name the file to write (e.g. {})".format(output, output / "NAME"))
    if os.path.lexists(output) and not output.is_file():
        raise UsageError(f"--output {output} exists and is not a regular file; name another path")
    for target in (output, checksum, *outputs.side_paths(output)):
        for source in inputs:
            if _same_file(target, source):
                raise UsageError(
                    f"--output {output} would overwrite {source}, an input of this build; choose another path"
                )
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        outputs.remove_dead_temps(output)  # of a killed make
        fs.safe_unlink(fs.temp_name(output))  # the very step write_bundle takes first
    except OSError as exc:
        raise _output_error(output, exc) from None


def _output_error(output, exc):
    return write_error(
        exc,
        f"no space left to write the bundle {output}; free space or choose another --output",
        lambda reason: f"cannot write the bundle {output}: {reason}; choose another --output",
    )

"""The smaller commands: inspect, verify, fetch, lock."""

import json

from bundler.build.sources import fetch_source
from bundler.manifest import load_manifest
from bundler.manifest.lockfile import Lock, lock_path_for
from payload import report
from payload.errors import UsageError
from payload.layout import open_payload
from payload.report import describe


def _open(bundle):
    f = open(bundle, "rb")
    try:
        # inspect and verify read bundles from anywhere: a signature present is checked before the index is parsed
        return open_payload(str(bundle), f, check_signature=True), f
    except BaseException:
        f.close()
        raise


def inspect_bundle(bundle, as_json=False, sbom=False):
    """describe() of the bundle, and the shared libraries its files need from the target (`host_libs`); with
    `sbom`, the SBOM it carries instead."""
    from bundler.build.abi import bundle_host_libs, describe_libs

    payload, f = _open(bundle)
    with f:
        if sbom:
            from payload.sbom import read_sbom

            return read_sbom(payload, f).decode()
        text = describe(payload, as_json)
        libs = bundle_host_libs(payload, f)
    carried = _carried_libc(bundle)
    if as_json:
        doc = json.loads(text)
        doc["host_libs"] = libs
        doc["stub_libc"] = carried
        return json.dumps(doc, indent=2, sort_keys=True)
    listed = describe_libs(libs) or "none (the files need only glibc and what they carry)"
    text += f"\nhost libs:  {listed}"
    if carried:
        text += (
            f"\nstub libc:  carried, {len(carried['files'])} files ({carried['size'] / 1e6:.1f} MB): the stub needs "
            f"no C library of the device; {carried['needs']}"
        )
    return text


def _carried_libc(bundle):
    """What the C library a static stub carries is (its files, size, what it needs of the system), or None."""
    from bundler.build.glibc import kernel_floor
    from bundler.stubs.static import carried_libc

    carried = carried_libc(bundle)
    if carried is None:
        return None
    kernel = kernel_floor(carried)
    needs = f"Linux {kernel[0]}.{kernel[1]} or later and /proc" if kernel else "/proc"
    return {"files": [name for name, _ in carried], "size": sum(len(data) for _, data in carried), "needs": needs}


def verify_bundle(bundle, key=None, as_json=False):
    """The verification report (an IntegrityError names what does not hold); with as_json, the report as JSON."""
    payload, f = _open(bundle)
    with f:
        text = report.verify_payload(payload, f, key, key_option="--key")
    if not as_json:
        return text
    return json.dumps(
        {"bundle": str(bundle), "bundle_id": payload.bundle_id, "ok": True, "report": text.splitlines()},
        indent=2,
        sort_keys=True,
    )


def split_bundle(bundle, size, output):
    """`bundler split`: write the executable and parts of `bundle` (in place when output is bundle), and its side
    files (SBOM, provenance) beside the output; it keeps the bundle id and the signature, so it needs no key."""
    from bundler.media.outputs import carry_side_files, remove_dead_temps, side_files
    from bundler.media.split import bundle_source, write_split

    remove_dead_temps(output)  # of a killed split
    with open(bundle, "rb") as f:
        source = bundle_source(bundle, f)
        carried = side_files(bundle, source.index)  # a side file of another build is refused before any write
        index = write_split(source, output, size)
    carry_side_files(carried, bundle, output)
    return index


def repack_bundle(bundle, output, cache, level, frame_size, log=print):
    """`bundler repack`: `bundle` packed again at `level` and `frame_size`; it keeps the bundle id and the
    signature, so it needs no key."""
    from bundler.build.repack import repack

    return repack(bundle, output, cache, level=level, frame_size=frame_size, log=log)


def _complete_arches(manifest, log=print):
    """The architectures every file has a source for; those only some files have are named and skipped."""
    from payload.arches import NAMES as ARCHES

    def has(spec, arch):
        return "*" in spec.sources or arch in spec.sources

    complete = [a for a in ARCHES if all(has(spec, a) for spec in manifest.files)]
    for a in ARCHES:
        missing = [spec.path for spec in manifest.files if not has(spec, a)]
        if a not in complete and len(missing) < len(manifest.files):
            log("skipping {}: no source for {}".format(a, ", ".join(missing)))
    return complete


def _lock_arches(manifest, log=print):
    """The architectures `lock` pins when given none: those the files have sources for, or, when every source is
    arch-neutral (or there are no files), this host's: nothing says the bundle is for any other."""
    from bundler.arch import host_arch

    if all(set(spec.sources) <= {"*"} for spec in manifest.files):
        return [host_arch()]
    return _complete_arches(manifest, log)


def fetch_all(manifest_path, arch, all_arches, cache, insecure_registries, log=print, stubs=False, mirror=None):
    from bundler.arch import host_arch

    manifest = load_manifest(manifest_path)
    lock = Lock.load(lock_path_for(manifest.path))
    from bundler.build.make import registry_client
    from bundler.images.embed import embed_images, pin_images
    from bundler.manifest.model import Variant

    arches = _complete_arches(manifest, log) if all_arches else [arch or host_arch()]
    if stubs:  # what cannot be built fails now, before the downloads
        from bundler.stubs.portable import check_can_build

        for a in arches:
            check_can_build(cache, a, mirror=mirror)

    for a in arches:
        manifest.check_arch(a)
        for spec in manifest.files:
            fetch_source(manifest, lock, spec, a, cache, locked=False, offline=False)
        with registry_client(insecure_registries) as client:
            everything = Variant("all", tuple(i.name for i in manifest.images))
            embed_images(pin_images(manifest, everything, lock, a, client, False, log=log), client, cache, log=log)
    if stubs:
        from bundler.stubs.portable import portable_stub

        for a in arches:
            log(f"portable {a} stub: {portable_stub(cache, a, mirror=mirror, log=log)}")
    log("cache filled for {}: {}".format(", ".join(arches), cache.root))


def write_lock(manifest_path, arches, cache, insecure_registries, log=print, stubs=False, stub=None, mirror=None):
    """Pin every source and image of `arches`, and their stubs once built (`stubs`: build the portable ones first;
    `stub`: a prebuilt one, pinned for its own architecture)."""
    from bundler.build.download import fetch, is_local

    manifest = load_manifest(manifest_path)
    lock = Lock.load(lock_path_for(manifest.path))
    arches = list(arches) or _lock_arches(manifest, log)
    if not arches:
        raise UsageError(f"{manifest_path}: no file has a source; nothing to lock")
    for a in arches:
        manifest.check_arch(a)
    stub_arch = _prebuilt_stub_arch(stub, arches) if stub is not None else None
    if stubs:  # what cannot be built fails now, before the downloads
        from bundler.stubs.portable import check_can_build

        for a in arches:
            if a != stub_arch:
                check_can_build(cache, a, mirror=mirror)
    for a in arches:
        for spec in manifest.files:
            source = manifest.source_for(spec, a)
            # Rows keep the URL as the manifest writes it, so the lock holds in any checkout. A local file is
            # pinned afresh (locking is how its new contents are accepted); a download keeps its pin.
            url = manifest.resolve_url(source)
            known = source.sha256 or (None if is_local(url) else lock.file_sha256(spec.path, a, source.url))
            path = fetch(url, sha256=known, cache=cache)
            lock.set_file(spec.path, a, source.url, path.name)
    _lock_images(manifest, lock, arches, insecure_registries, log)
    _lock_stubs(lock, arches, cache, stubs, stub, stub_arch, mirror, log)
    lock.prune(manifest)
    return lock.save()


def _prebuilt_stub_arch(stub, arches):
    """The architecture a prebuilt stub (`lock --stub PATH`) is pinned for: its own, which must be one locked."""
    from bundler.build.make import check_prebuilt_stub
    from payload.elf import elf_machine

    try:
        with open(stub, "rb") as f:
            machine = elf_machine(f)
    except OSError as exc:
        raise UsageError(f"cannot read stub {stub}: {exc.strerror}") from None
    if machine not in arches:
        raise UsageError(
            f"stub {stub} is built for {machine}, and the lock is written for {', '.join(arches)}; add --arch {machine}"
        )
    check_prebuilt_stub(stub, machine)
    return machine


def _lock_stubs(lock, arches, cache, build, prebuilt, prebuilt_arch, mirror, log):
    """Pin each architecture's stub once it is built: `prebuilt` for its own architecture, else the portable stub in
    the cache (built first with `build`). A built stub is pinned afresh, like a local file: locking is how a new
    stub is accepted; a pin whose stub is not in this cache stays."""
    from bundler.build.assemble import stub_sha256_of
    from bundler.stubs.build import cached_stub
    from bundler.stubs.portable import cached_stub_path, portable_stub

    for a in arches:
        if a == prebuilt_arch:
            path = prebuilt
        elif build:
            path = portable_stub(cache, a, mirror=mirror, log=log)
        else:
            path = cached_stub_path(cache, a)
            if not cached_stub(cache, path):
                if lock.stub_pin(a) is None:
                    log(f"the portable {a} stub is not built in {cache.root}: not pinned (`lock --stubs` builds it)")
                continue
        lock.set_stub(a, stub_sha256_of(path, cache.tmp / "lock-stub"))


def _lock_images(manifest, lock, arches, insecure_registries, log):
    """Pin every image for every architecture; rows already in the lock are kept (delete one to re-resolve)."""
    from bundler.build.make import registry_client
    from bundler.images.embed import resolve_digest

    if not manifest.images:
        return
    with registry_client(insecure_registries) as client:
        for a in arches:
            for spec in manifest.images:
                platform = spec.platform_for(a)
                if lock.image_digest(spec.name, spec.ref, platform) is None:
                    lock.set_image(spec.name, spec.ref, platform, resolve_digest(spec, platform, client, log))

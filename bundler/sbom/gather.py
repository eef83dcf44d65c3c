"""Gather what `bundler make` built into an SBOM, and make it a member of the bundle: one more entry, under
payload/rules.py SBOM_PATHS in its own group, so the bundle id and the signature cover it with no format change."""

import hashlib

from bundler import __version__
from bundler.build.compress import Member
from bundler.cache import file_sha256
from bundler.sbom import purls
from bundler.sbom.model import Description, FileItem, ImageItem, Layer, StubItem
from payload.oci.reference import parse_image_manifest, parse_reference
from payload.rules import SBOM_PATHS


def file_items(manifest, arch, members_by_group):
    """Every [[file]] as built: its member's sha256 and size, and what its source says about it."""
    members = {m.path: m for group in members_by_group.values() for m in group}
    items = []
    for spec in manifest.files:
        member = members[spec.path]
        source = manifest.source_for(spec, arch)
        url = manifest.resolve_url(source)
        package = purls.for_url(url)
        if package is None and url.startswith("file://") and not source.extract:
            package = purls.for_local_file(url[len("file://") :])
        items.append(
            FileItem(
                path=spec.path,
                sha256=member.sha256,
                size=member.size,
                mode=spec.mode,
                source=url,
                extract=source.extract,
                purl=package.purl if package else None,
                package=package.name if package else None,
                version=package.version if package else None,
                license=spec.license or (package.license if package else None),
            )
        )
    return items


def image_items(records, cache, client=None):
    """Every image with its layers: as stored in the bundle when embedded, else as the registry serves them (from
    the cache, or asked of the registry when `client` is given; none when neither has the manifest)."""
    items = []
    for record in records:
        layers = ()
        manifest_digest = record.manifest if record.embedded else record.digest
        data = None
        if cache.has(manifest_digest.partition(":")[2]):
            data = cache.blob_path(manifest_digest.partition(":")[2]).read_bytes()
        elif client is not None:
            data = client.fetch_manifest(parse_reference(record.ref).with_digest(record.digest))
        if data is not None:
            _, found = parse_image_manifest(data, f"manifest of {record.ref}")
            layers = tuple(Layer(layer.digest, layer.size) for layer in found)
        items.append(
            ImageItem(
                name=record.name,
                ref=record.ref,
                platform=record.platform,
                digest=record.digest,
                embedded=record.embedded,
                layers=layers,
                stored_manifest=record.manifest if record.embedded else None,
            )
        )
    return items


def stub_item(stub, kind, root=None):
    from bundler.sbom.stub import describe as describe_stub

    kind, found = describe_stub(stub, kind, root)
    return StubItem(file_sha256(stub), stub.stat().st_size, kind, tuple(found))


def describe(manifest, variant, arch, files, images, stub):
    return Description(
        name=manifest.name,
        version=manifest.version,
        variant=variant,
        arch=arch,
        bundler_version=__version__,
        files=tuple(files),
        images=tuple(images),
        stub=stub,
    )


def render(description, fmt):
    if fmt == "cyclonedx":
        from bundler.sbom.cyclonedx import render as render_format
    else:
        from bundler.sbom.spdx import render as render_format
    return render_format(description).encode()


def sbom_member(cache, fmt, text):
    """The SBOM's bytes as a cache blob, and the member that puts them at SBOM_PATHS[fmt] in the bundle."""
    sha256 = hashlib.sha256(text).hexdigest()
    if not cache.has(sha256):
        with cache.writer("SBOM") as blob:
            blob.write(text)
            blob.commit(sha256)
    return Member(SBOM_PATHS[fmt], 0o644, "file", cache.blob_path(sha256), sha256, len(text))

"""The SBOM as CycloneDX 1.6 JSON, written with cyclonedx-python-lib.

The bundle is the BOM's metadata component; its files are `file` components, its images `container` components
with their layers nested, its stub an `application` with its components nested (the packages of the Debian root
it was built in carry the property bundler:role = build-root, the zig that compiled the launcher build-tool).
Sizes, modes and sources are properties."""

import datetime
import uuid

from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import LicenseExpression
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from bundler.sbom.stub import BUILD_ROOT, BUILD_TOOL, LAUNCHER, RUNTIME


def _hash(hex_digest):
    return [HashType(alg=HashAlgorithm.SHA_256, content=hex_digest)]


def _purl(text):
    return PackageURL.from_string(text) if text else None


def _props(**values):
    return [Property(name=f"bundler:{k}", value=str(v)) for k, v in values.items() if v is not None]


def render(description):
    """The CycloneDX 1.6 JSON text of `description` (bundler/sbom/model.py)."""
    d = description
    bundle = Component(
        type=ComponentType.APPLICATION,
        name=d.name,
        version=d.version,
        bom_ref="bundle",
        properties=_props(variant=d.variant, arch=d.arch),
    )
    components = []
    for n, item in enumerate(d.files, 1):
        refs = []
        if item.source.startswith(("http://", "https://")):
            refs.append(ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(item.source)))
        components.append(
            Component(
                type=ComponentType.FILE,
                name=item.path,
                version=item.version,
                bom_ref=f"file-{n}",
                hashes=_hash(item.sha256),
                purl=_purl(item.purl),
                licenses=[LicenseExpression(item.license)] if item.license else None,
                external_references=refs,
                properties=_props(
                    size=item.size,
                    mode=f"{item.mode:04o}",
                    source=item.source,
                    extract=item.extract,
                    package=item.package,
                ),
            )
        )
    for n, image in enumerate(d.images, 1):
        layers = [
            Component(
                type=ComponentType.FILE,
                name=f"{image.name} layer {m}",
                version=layer.digest,
                bom_ref=f"image-{n}-layer-{m}",
                hashes=_hash(layer.digest.partition(":")[2]),
                properties=_props(size=layer.size),
            )
            for m, layer in enumerate(image.layers, 1)
        ]
        components.append(
            Component(
                type=ComponentType.CONTAINER,
                name=image.name,
                version=image.digest,
                bom_ref=f"image-{n}",
                hashes=_hash(image.digest.partition(":")[2]),
                purl=_purl(image.purl),
                components=layers,
                properties=_props(
                    ref=image.ref,
                    platform=image.platform,
                    embedded=str(image.embedded).lower(),
                    stored_manifest=image.stored_manifest,
                ),
            )
        )
    if d.stub is not None:
        kinds = {
            RUNTIME: ComponentType.LIBRARY,
            BUILD_ROOT: ComponentType.OPERATING_SYSTEM,
            BUILD_TOOL: ComponentType.APPLICATION,
        }
        parts = [
            Component(
                type=ComponentType.APPLICATION if part.name == LAUNCHER else kinds.get(part.role, kinds[RUNTIME]),
                name=part.name,
                version=part.version,
                bom_ref=f"stub-{n}",
                purl=_purl(part.purl),
                licenses=[LicenseExpression(part.license)] if part.license else None,
                properties=_props(role=part.role),
            )
            for n, part in enumerate(d.stub.components, 1)
        ]
        components.append(
            Component(
                type=ComponentType.APPLICATION,
                name="bundler-stub",
                version=d.bundler_version,
                bom_ref="stub",
                hashes=_hash(d.stub.sha256),
                components=parts,
                properties=_props(kind=d.stub.kind, size=d.stub.size),
            )
        )
    bom = Bom(
        components=components,
        metadata=BomMetaData(component=bundle, timestamp=d.created.replace(tzinfo=datetime.timezone.utc)),
        serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"bundler:{d.digest()}"),
    )
    bom.register_dependency(bundle, components)
    return JsonV1Dot6(bom).output_as_string(indent=2)

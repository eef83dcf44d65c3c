"""The SBOM as SPDX 2.3 JSON, written with spdx-tools (which validates the document before it writes it).

Each file, image, layer and stub component is an SPDX package (`filesAnalyzed: false`): SPDX 2.3 files must
carry a SHA1, packages may carry the sha256 alone. The bundle is the package the document describes; it CONTAINS
its files, images and stub; an image CONTAINS its layers, the stub its components (the launcher and the musl
linked into it among them); the packages of the Debian root the stub was built in, and the zig that compiled the
launcher, are each a BUILD_TOOL_OF the stub. SPDX 2.3 has no size field: a package's comment gives it."""

import io

from spdx_tools.spdx.model import (
    Actor,
    ActorType,
    Checksum,
    ChecksumAlgorithm,
    CreationInfo,
    Document,
    ExternalPackageRef,
    ExternalPackageRefCategory,
    Package,
    PackagePurpose,
    Relationship,
    RelationshipType,
    SpdxNoAssertion,
)
from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream

from bundler.sbom.stub import BUILD_ROOT, BUILD_TOOL, LAUNCHER

NAMESPACE = "https://spdx.org/spdxdocs/bundler"


def _sha256(hex_digest):
    return [Checksum(ChecksumAlgorithm.SHA256, hex_digest)]


def _purl(purl):
    return [ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", purl)] if purl else []


def _license(text):
    if not text:
        return SpdxNoAssertion()
    from bundler.sbom.licenses import licensing

    return licensing().parse(text)


def _download(url):
    """The URL when SPDX's download-location grammar takes it (it refuses a host given as an IP address), else
    NOASSERTION: the package's sourceInfo names the source either way."""
    from spdx_tools.spdx.validation.uri_validators import validate_download_location

    if url.startswith(("http://", "https://")) and not validate_download_location(url):
        return url
    return SpdxNoAssertion()


def render(description):
    """The SPDX 2.3 JSON text of `description` (bundler/sbom/model.py)."""
    d = description
    info = CreationInfo(
        spdx_version="SPDX-2.3",
        spdx_id="SPDXRef-DOCUMENT",
        name=f"{d.name}-{d.version}-{d.variant}-{d.arch}",
        document_namespace=f"{NAMESPACE}/{d.name}-{d.version}-{d.variant}-{d.arch}-{d.digest()}",
        creators=[Actor(ActorType.TOOL, f"bundler-{d.bundler_version}")],
        created=d.created,
    )
    bundle = Package(
        "SPDXRef-Bundle",
        d.name,
        SpdxNoAssertion(),
        version=d.version,
        files_analyzed=False,
        primary_package_purpose=PackagePurpose.APPLICATION,
        comment=f"bundler bundle, variant {d.variant}, arch {d.arch}",
    )
    packages, relationships = [bundle], [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, "SPDXRef-Bundle")]

    def add(package, parent="SPDXRef-Bundle", kind=RelationshipType.CONTAINS):
        packages.append(package)
        if kind == RelationshipType.BUILD_TOOL_OF:
            relationships.append(Relationship(package.spdx_id, kind, parent))
        else:
            relationships.append(Relationship(parent, kind, package.spdx_id))

    for n, item in enumerate(d.files, 1):
        origin = (item.local_path or item.source) + (f", member {item.extract}" if item.extract else "")
        add(
            Package(
                f"SPDXRef-File-{n}",
                item.path,
                _download(item.source),
                version=item.version,
                file_name=item.path,
                files_analyzed=False,
                checksums=_sha256(item.sha256),
                source_info=f"from {origin}",
                license_declared=_license(item.license),
                license_concluded=SpdxNoAssertion(),
                copyright_text=SpdxNoAssertion(),
                external_references=_purl(item.purl),
                primary_package_purpose=PackagePurpose.FILE,
                comment=f"size {item.size} bytes, mode {item.mode:04o}"
                + (f"; package {item.package} {item.version}" if item.package else ""),
            )
        )
    for n, image in enumerate(d.images, 1):
        image_id = f"SPDXRef-Image-{n}"
        where = "embedded" if image.embedded else "pulled by the device at its first start"
        add(
            Package(
                image_id,
                image.name,
                SpdxNoAssertion(),
                version=image.digest,
                files_analyzed=False,
                checksums=_sha256(image.digest.partition(":")[2]),
                source_info=f"from {image.ref}@{image.digest} ({image.platform}; {where})"
                + (f"; stored as manifest {image.stored_manifest}" if image.stored_manifest else ""),
                external_references=_purl(image.purl),
                primary_package_purpose=PackagePurpose.CONTAINER,
            )
        )
        for m, layer in enumerate(image.layers, 1):
            add(
                Package(
                    f"SPDXRef-Image-{n}-Layer-{m}",
                    f"{image.name} layer {m}",
                    SpdxNoAssertion(),
                    version=layer.digest,
                    files_analyzed=False,
                    checksums=_sha256(layer.digest.partition(":")[2]),
                    primary_package_purpose=PackagePurpose.ARCHIVE,
                    comment=f"size {layer.size} bytes",
                ),
                parent=image_id,
            )
    if d.stub is not None:
        add(
            Package(
                "SPDXRef-Stub",
                "bundler-stub",
                SpdxNoAssertion(),
                version=d.bundler_version,
                files_analyzed=False,
                checksums=_sha256(d.stub.sha256),
                primary_package_purpose=PackagePurpose.APPLICATION,
                comment=f"the {d.stub.kind} PyInstaller one-file stub, size {d.stub.size} bytes",
            )
        )
        for n, part in enumerate(d.stub.components, 1):
            build_tool = part.role in (BUILD_ROOT, BUILD_TOOL)
            purpose, comment = PackagePurpose.LIBRARY, None
            if part.role == BUILD_ROOT:
                purpose, comment = PackagePurpose.OPERATING_SYSTEM, "a package of the Debian root the stub was built in"
            elif part.role == BUILD_TOOL:
                purpose, comment = PackagePurpose.APPLICATION, "the C compiler that built the launcher (build host)"
            elif part.name == LAUNCHER:
                purpose, comment = PackagePurpose.APPLICATION, "the static launcher at the front of the stub (ours)"
            add(
                Package(
                    f"SPDXRef-Stub-{n}",
                    part.name,
                    SpdxNoAssertion(),
                    version=part.version,
                    files_analyzed=False,
                    license_declared=_license(part.license),
                    external_references=_purl(part.purl),
                    primary_package_purpose=purpose,
                    comment=comment,
                ),
                parent="SPDXRef-Stub",
                kind=RelationshipType.BUILD_TOOL_OF if build_tool else RelationshipType.CONTAINS,
            )
    out = io.StringIO()
    write_document_to_stream(Document(info, packages=packages, relationships=relationships), out, validate=True)
    return out.getvalue()

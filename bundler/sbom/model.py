"""What an SBOM describes, whatever its format: the bundle's files (with where each came from), its images (with
their layers) and its stub (with its components). Gathered by `bundler make`; written by bundler/sbom/spdx.py or
bundler/sbom/cyclonedx.py."""

import datetime
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

from packageurl import PackageURL

from payload.oci.reference import parse_reference


@dataclass(frozen=True)
class FileItem:
    path: str  # under the installed root
    sha256: str
    size: int
    mode: int
    source: str  # the URL as fetched (file:// for a local path)
    extract: str | None = None  # the member of the release archive at `source`
    purl: str | None = None
    package: str | None = None  # the package's name and version, when the source names one
    version: str | None = None
    license: str | None = None  # an SPDX expression: the manifest's, else the Debian package's

    @property
    def local_path(self):
        return self.source[len("file://") :] if self.source.startswith("file://") else None


@dataclass(frozen=True)
class Layer:
    digest: str
    size: int


@dataclass(frozen=True)
class ImageItem:
    name: str
    ref: str  # fully qualified, with its tag
    platform: str
    digest: str  # the manifest digest the registry serves (pinned)
    embedded: bool
    layers: tuple = ()  # Layer, as stored in the bundle (embedded) or as the registry serves them
    stored_manifest: str | None = None  # the manifest digest inside the bundle (raw layers change it)

    @property
    def purl(self):
        ref = parse_reference(self.ref)
        qualifiers = {"repository_url": ref.name, "arch": self.platform.split("/", 2)[1]}
        if ref.tag:
            qualifiers["tag"] = ref.tag
        return str(PackageURL("oci", None, ref.repository.rsplit("/", 1)[-1], self.digest, qualifiers))


@dataclass(frozen=True)
class StubItem:
    sha256: str
    size: int
    kind: str  # portable, host or prebuilt (bundler/sbom/stub.py)
    components: tuple = ()  # bundler/sbom/stub.py Component


@dataclass(frozen=True)
class Description:
    name: str
    version: str
    variant: str
    arch: str
    bundler_version: str
    files: tuple
    images: tuple
    stub: StubItem | None
    created: datetime.datetime = field(default_factory=lambda: created_time(os.environ))

    def digest(self):
        """A sha256 of everything described (not of the time): names the document, the same for the same inputs."""
        doc = asdict(self)
        doc.pop("created")
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def created_time(environ):
    """SOURCE_DATE_EPOCH when set (reproducible-builds.org), else the Unix epoch: the SBOM is inside the bundle, so
    a wall-clock time would give every make another bundle id."""
    try:
        seconds = int(environ.get("SOURCE_DATE_EPOCH", "0"))
    except ValueError:
        seconds = 0
    return datetime.datetime.fromtimestamp(max(seconds, 0), datetime.timezone.utc).replace(tzinfo=None)

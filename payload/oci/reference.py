"""Names of images and their parts: references, digests, platforms, media types.

References are normalised the way docker does: `busybox` is
`registry-1.docker.io` / `library/busybox:latest`, and `docker.io/x/y` is `registry-1.docker.io` / `x/y`.
"""

import hashlib
import json
from typing import NamedTuple, Optional

from payload import arches
from payload.errors import IntegrityError, UsageError
from payload.rules import DOCKER_HUB_ALIASES, is_oci_digest, is_platform, is_registry_host, split_reference

DOCKER_HUB_REGISTRY = "registry-1.docker.io"
DOCKER_HUB_NAME = "docker.io"

# Media types the client and the archive writer deal with.
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)


def check_digest(digest: str, what: str = "digest") -> str:
    """Return `digest` if it is a sha256 or sha512 digest in canonical form; UsageError otherwise."""
    if not is_oci_digest(digest):
        raise UsageError(f"invalid {what} {digest!r}: expected sha256:<64 hex digits>")
    return digest


def digest_hasher(digest: str):
    """A fresh hashlib object for the algorithm `digest` names."""
    return hashlib.new(check_digest(digest).split(":", 1)[0])


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_bytes(data: bytes, digest: str, what: str) -> bytes:
    """Return `data` if it hashes to `digest`; IntegrityError naming `what` otherwise."""
    hasher = digest_hasher(digest)
    hasher.update(data)
    actual = hasher.name + ":" + hasher.hexdigest()
    if actual != digest:
        raise IntegrityError(f"{what}: content is {actual}, expected {digest}; the source served wrong data")
    return data


class Reference(NamedTuple):
    """A normalised image reference. `tag` and `digest` may both be set (`name:tag@digest`)."""

    registry: str
    repository: str
    tag: Optional[str] = None
    digest: Optional[str] = None

    @property
    def name(self) -> str:
        """The fully qualified name without tag or digest: `docker.io/library/busybox`."""
        registry = DOCKER_HUB_NAME if self.registry == DOCKER_HUB_REGISTRY else self.registry
        return f"{registry}/{self.repository}"

    def fully_qualified(self) -> str:
        """`docker.io/library/busybox:latest`: the tag form when there is a tag, else `name@digest`.

        This is what `io.containerd.image.name` and docker's `RepoTags` carry.
        """
        if self.tag:
            return f"{self.name}:{self.tag}"
        return f"{self.name}@{self.digest}"

    def with_digest(self, digest: str) -> "Reference":
        return self._replace(digest=check_digest(digest))

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return text


def parse_reference(text: str) -> Reference:
    """Parse and normalise an image reference as docker does; UsageError when it is not one."""
    parts = split_reference(text)
    if parts is None:
        raise UsageError(
            f"invalid image reference {text!r}: expected [registry/]repository[:tag][@sha256:<64 hex>], repository "
            "names in lowercase letters, digits and . _ - /"
        )
    domain, repository, tag, digest = parts
    registry = DOCKER_HUB_REGISTRY if domain is None or domain.lower() in DOCKER_HUB_ALIASES else domain
    if registry == DOCKER_HUB_REGISTRY and "/" not in repository:
        repository = "library/" + repository
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, repository, tag, digest)


class Platform(NamedTuple):
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(part for part in self if part)

    def normalised(self) -> "Platform":
        """Variants as containerd compares them: arm64 has v8 by default, arm has v7."""
        variant = self.variant
        if self.architecture == "arm64" and variant == "v8":
            variant = ""
        elif self.architecture == "arm" and not variant:
            variant = "v7"
        return Platform(self.os, self.architecture, variant)

    def matches(self, other: "Platform") -> bool:
        return self.normalised() == other.normalised()


def platform_for_arch(arch: str) -> Platform:
    """The image platform for a bundle architecture (or one of its aliases): `arm` is `linux/arm/v7`."""
    name = arches.canonical(arch)
    if name is None:
        raise UsageError(f"unknown architecture {arch!r}: use one of {', '.join(arches.NAMES)}")
    return parse_platform(arches.get(name).platform)


def parse_platform(text: str) -> Platform:
    """Parse `os/arch[/variant]`, e.g. `linux/arm/v7`."""
    if not is_platform(text):
        raise UsageError(f"invalid platform {text!r}: expected os/arch[/variant] such as linux/arm/v7")
    return Platform(*text.split("/"))


def platform_of(entry: dict) -> Optional[Platform]:
    """The platform of a manifest-list entry or of an image config, None when it has none."""
    platform = entry.get("platform", entry)
    if not isinstance(platform, dict) or not platform.get("os") or not platform.get("architecture"):
        return None
    return Platform(str(platform["os"]), str(platform["architecture"]), str(platform.get("variant") or ""))


def is_attestation(entry: dict) -> bool:
    """Buildkit stores provenance/SBOM manifests in the index as `unknown/unknown` entries."""
    annotations = entry.get("annotations") or {}
    platform = platform_of(entry)
    return "vnd.docker.reference.type" in annotations or (
        platform is not None and platform.os == "unknown" and platform.architecture == "unknown"
    )


def select_platform(index: dict, platform: Platform, image: str) -> dict:
    """The first entry of a manifest list / OCI index for `platform`; UsageError naming those that exist."""
    candidates = [e for e in index.get("manifests") or [] if isinstance(e, dict) and not is_attestation(e)]
    for entry in candidates:
        entry_platform = platform_of(entry)
        if entry_platform is not None and entry_platform.matches(platform):
            return entry
    available = sorted({str(platform_of(e)) for e in candidates if platform_of(e) is not None})
    raise UsageError(f"image {image} has no {platform} variant; it has: {', '.join(available) or 'no platforms'}")


class Descriptor(NamedTuple):
    media_type: str
    digest: str
    size: int


def descriptor_from(entry, what: str) -> Descriptor:
    if not isinstance(entry, dict):
        raise IntegrityError(f"{what} is not a descriptor")
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise IntegrityError(f"{what} has no valid size")
    try:
        digest = check_digest(entry.get("digest"), what + " digest")
    except UsageError as error:
        raise IntegrityError(str(error)) from None
    return Descriptor(str(entry.get("mediaType") or ""), digest, size)


def manifest_media_type(data: bytes, content_type: str = "") -> str:
    """The media type of a manifest: its `mediaType` field, else the HTTP Content-Type, else its shape."""
    document = load_json(data, "manifest")
    declared = document.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    content_type = (content_type or "").split(";", 1)[0].strip()
    if content_type in INDEX_TYPES + MANIFEST_TYPES:
        return content_type
    if document.get("schemaVersion") == 2 and "manifests" in document:
        return OCI_INDEX
    if document.get("schemaVersion") == 2 and "layers" in document:
        return OCI_MANIFEST
    return content_type or "unknown"


def parse_image_manifest(data: bytes, what: str):
    """(config descriptor, layer descriptors) of an image manifest (OCI or docker schema 2)."""
    document = load_json(data, what)
    if document.get("schemaVersion") != 2 or not isinstance(document.get("layers"), list):
        raise IntegrityError(f"{what} is not an image manifest (schema 2)")
    config = descriptor_from(document.get("config"), what + " config")
    layers = tuple(descriptor_from(layer, f"{what} layer {n}") for n, layer in enumerate(document["layers"]))
    return config, layers


def load_json(data: bytes, what: str) -> dict:
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise IntegrityError(f"{what} is not valid JSON") from None
    if not isinstance(document, dict):
        raise IntegrityError(f"{what} is not a JSON object")
    return document


def parse_insecure_registry(text: str, what: str = "insecure registry") -> str:
    """`HOST:PORT` for plain http: the port is required, so that one service, never a whole host, is trusted
    without TLS."""
    host = parse_registry_host(text, what)
    if not host.rpartition(":")[2].isdigit() or not host.rpartition(":")[2].isascii():
        raise UsageError(
            f"invalid {what} {text!r}: expected HOST:PORT (plain http is allowed to one port of a host, "
            "so name the port, like 127.0.0.1:5000)"
        )
    return host


def parse_registry_host(text: str, what: str = "registry") -> str:
    """`HOST[:PORT]` (an `https://` or `http://` prefix and a trailing slash are dropped), for mirrors and
    insecure registries given on a command line."""
    host = (text or "").strip()
    for scheme in ("https://", "http://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
    host = host.rstrip("/")
    if not is_registry_host(host):
        raise UsageError(f"invalid {what} {text!r}: expected HOST[:PORT]")
    host = host.lower()
    return DOCKER_HUB_REGISTRY if host in DOCKER_HUB_ALIASES else host

"""The manifest's data model: what bundle.toml says, as frozen dataclasses (read by bundler/manifest/reader.py)."""

from __future__ import annotations

import difflib
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from payload import arches, rules
from payload.errors import UsageError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".tar.zst", ".zip")
DEFAULT_GROUP = "files"
IMAGES_GROUP = "images"  # reserved: bundler/images/embed.py puts the embedded images there
DEFAULT_VARIANT = "default"
EMBED_ALL = "all"
ARCHIVE_TRANSPORTS = ("oci-archive", "docker-archive")


@dataclass(frozen=True)
class Source:
    """Where one file comes from. `url` is as written in the manifest; resolve_url() makes it absolute."""

    url: str
    sha256: str | None = None
    extract: str | None = None
    base_dir: Path | None = field(default=None, compare=False, repr=False)
    line: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class FileSpec:
    path: str
    mode: int
    group: str
    sources: dict[str, Source] = field(hash=False)  # keyed by architecture, or '*' for every architecture
    line: int = field(default=0, compare=False, repr=False)
    license: str | None = None  # an SPDX license expression, for the SBOM


@dataclass(frozen=True)
class ImageSpec:
    name: str
    ref: str
    platform: str | None = None
    base_dir: Path | None = field(default=None, compare=False, repr=False)
    line: int = field(default=0, compare=False, repr=False)

    @property
    def transport(self) -> str | None:
        """'oci-archive' or 'docker-archive' for an image read from a local file, None for a registry image."""
        prefix = self.ref.partition(":")[0]
        return prefix if prefix in ARCHIVE_TRANSPORTS else None

    @property
    def archive_path(self) -> Path | None:
        """The absolute path of a local image archive, None for a registry image."""
        if self.transport is None:
            return None
        path = self.ref.partition(":")[2]
        return Path(os.path.normpath(os.path.join(self.base_dir or os.getcwd(), path)))

    def platform_for(self, arch: str) -> str:
        _check_arch_name(arch)
        return self.platform or arches.get(arch).platform


@dataclass(frozen=True)
class Variant:
    name: str
    embed: tuple[str, ...]
    pull: str = rules.PULL_BACKGROUND  # when a device pulls the images left out (docs/images.md)
    line: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class Manifest:
    path: Path
    dir: Path
    name: str
    version: str
    entrypoint: list[str]
    description: str | None
    files: list[FileSpec]
    images: list[ImageSpec]
    variants: dict[str, Variant]
    min_glibc: tuple[int, int] | None = None  # the oldest glibc the bundle must start on (bundler/build/abi.py)
    host_libs: tuple[str, ...] = ()  # sonames (globs) the target provides to the bundle's files (bundler/build/abi.py)
    update_repository: str | None = None  # [update] repository: --bundle-update's default REF
    update_policy: dict = field(default_factory=dict)  # [update] settings not at their default (payload/rules.py)
    sbom: str = "spdx"  # [bundle] sbom: the SBOM's format (payload/rules.py SBOM_FORMATS)

    def file(self, path: str) -> FileSpec:
        for spec in self.files:
            if spec.path == path:
                return spec
        raise UsageError(f"{self.path}: no [[file]] with path '{path}'; check the path against bundle.toml")

    def image(self, name: str) -> ImageSpec:
        for spec in self.images:
            if spec.name == name:
                return spec
        raise UsageError(f"{self.path}: no [[image]] named '{name}'; check the name against bundle.toml")

    def source_for(self, file: FileSpec | str, arch: str) -> Source:
        spec = self.file(file) if isinstance(file, str) else file
        _check_arch_name(arch)
        source = spec.sources.get("*") or spec.sources.get(arch)
        if source is None:
            raise UsageError(
                f"{self.path}:{spec.line}: file '{spec.path}' has no source for arch '{arch}'; "
                f"add [file.source.{arch}] or drop the file"
            )
        return source

    def check_arch(self, arch: str) -> None:
        """Fail, naming every file that has no source for `arch`, before anything is downloaded."""
        _check_arch_name(arch)
        missing = [spec for spec in self.files if "*" not in spec.sources and arch not in spec.sources]
        if len(missing) == 1:
            self.source_for(missing[0], arch)
        if missing:
            names = ", ".join(f"'{spec.path}' (line {spec.line})" for spec in missing)
            raise UsageError(
                f"{self.path}:{missing[0].line}: files {names} have no source for arch '{arch}'; "
                f"add [file.source.{arch}] to each or drop them"
            )

    def variant(self, name: str | None = None) -> Variant:
        if name is None:
            return next(iter(self.variants.values()))
        if name in self.variants:
            return self.variants[name]
        raise UsageError(
            f"{self.path}: unknown variant '{name}'{did_you_mean(name, self.variants)}; "
            f"choose one of: {', '.join(self.variants)}"
        )

    def resolve_url(self, source: Source) -> str:
        """resolve_url() as a method, for callers that hold the manifest."""
        return resolve_url(source)


def resolve_url(source: Source) -> str:
    """The URL to fetch: http(s) and file URLs as written, paths made absolute file:// URLs."""
    scheme = urllib.parse.urlsplit(source.url).scheme.lower()
    if scheme in ("http", "https", "file"):
        return source.url
    base = source.base_dir if source.base_dir is not None else Path.cwd()
    return Path(os.path.normpath(os.path.join(base, source.url))).as_uri()


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_arch_name(arch: str) -> None:
    if arches.get(arch) is None:
        hint = arches.canonical(arch) or (difflib.get_close_matches(arch, arches.NAMES, n=1) or [None])[0]
        suggestion = f" (did you mean '{hint}'?)" if hint else ""
        raise UsageError(f"unknown architecture '{arch}'{suggestion}; choose one of: {', '.join(arches.NAMES)}")

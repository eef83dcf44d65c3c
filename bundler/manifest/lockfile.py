"""bundle.lock: the sha256 of every file source and the manifest digest of every image, per architecture, and the
stub's `stub_sha256` per architecture once it is built.

`bundler lock` fills it so that a manifest may name upstream releases without hand-copied hashes; `make`
checks every download against it. A row counts only while the manifest still names the same url (or image
ref): changing either invalidates the pin. A stub row pins the stub `make` puts in front of the payload, in the
form the bundle's index records (`bundler inspect` shows it), so two hosts that make one lock make one executable
(docs/reproducible.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import tomli_w

from bundler.manifest.model import FileSpec, ImageSpec, Manifest
from bundler.manifest.toml_lines import TomlLines, parse_toml, read_toml_text
from payload import arches, fs, rules
from payload.errors import HostError, IntegrityError, UsageError

LOCK_VERSION = 1
LOCK_HEADER = (
    "# Written by `bundler lock`: the sha256 of every file source, the digest of every image and the stubs' sha256.\n"
    "# Keep it beside bundle.toml under version control; do not edit it by hand.\n\n"
)

_FILE_ROW = ("path", "arch", "url", "sha256")
_IMAGE_ROW = ("name", "ref", "platform", "digest")
_STUB_ROW = ("arch", "stub_sha256")
_REWRITE = "run `bundler lock` to write it again"


@dataclass(frozen=True)
class FilePin:
    path: str
    arch: str
    url: str
    sha256: str
    line: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class ImagePin:
    name: str
    ref: str
    platform: str
    digest: str
    line: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class StubPin:
    arch: str
    stub_sha256: str
    line: int = field(default=0, compare=False, repr=False)


def lock_path_for(manifest_path: str | os.PathLike) -> Path:
    """bundle.toml -> bundle.lock, in the same directory."""
    return Path(manifest_path).with_suffix(".lock")


class Lock:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else None
        self._files: dict[tuple[str, str], FilePin] = {}
        self._images: dict[tuple[str, str], ImagePin] = {}
        self._stubs: dict[str, StubPin] = {}

    # -- queries and updates ---------------------------------------------------------------------------------

    @property
    def files(self) -> list[FilePin]:
        return sorted(self._files.values(), key=lambda pin: (pin.path, arches.NAMES.index(pin.arch)))

    @property
    def images(self) -> list[ImagePin]:
        return sorted(self._images.values(), key=lambda pin: (pin.name, pin.platform))

    @property
    def stubs(self) -> list[StubPin]:
        return sorted(self._stubs.values(), key=lambda pin: arches.NAMES.index(pin.arch))

    def stub_pin(self, arch: str) -> StubPin | None:
        return self._stubs.get(arch)

    def set_stub(self, arch: str, stub_sha256: str) -> None:
        if arch not in arches.NAMES or not rules.is_sha256(stub_sha256):
            raise ValueError(f"bad stub pin: arch {arch!r}, stub_sha256 {stub_sha256!r}")
        self._stubs[arch] = StubPin(arch, stub_sha256)

    def file_pin(self, path: str, arch: str) -> FilePin | None:
        return self._files.get((path, arch))

    def file_sha256(self, path: str, arch: str, url: str) -> str | None:
        pin = self._files.get((path, arch))
        return pin.sha256 if pin is not None and pin.url == url else None

    def set_file(self, path: str, arch: str, url: str, sha256: str) -> None:
        if arch not in arches.NAMES or not rules.is_sha256(sha256):
            raise ValueError(f"bad file pin: arch {arch!r}, sha256 {sha256!r}")
        self._files[(path, arch)] = FilePin(path, arch, url, sha256)

    def image_digest(self, name: str, ref: str, platform: str) -> str | None:
        pin = self._images.get((name, platform))
        return pin.digest if pin is not None and pin.ref == ref else None

    def set_image(self, name: str, ref: str, platform: str, digest: str) -> None:
        if not rules.is_digest(digest):
            raise ValueError(f"bad image digest {digest!r}")
        self._images[(name, platform)] = ImagePin(name, ref, platform, digest)

    def prune(self, manifest: Manifest) -> int:
        """Drop rows the manifest no longer explains (file, url, image or ref gone); return how many."""
        wanted_files = set()
        for spec in manifest.files:
            for arch in arches.NAMES:
                source = spec.sources.get("*") or spec.sources.get(arch)
                if source is not None:
                    wanted_files.add((spec.path, arch, source.url))
        wanted_images = {
            (image.name, image.ref, image.platform_for(arch)) for image in manifest.images for arch in arches.NAMES
        }
        stale_files = [key for key, pin in self._files.items() if (pin.path, pin.arch, pin.url) not in wanted_files]
        stale_images = [
            key for key, pin in self._images.items() if (pin.name, pin.ref, pin.platform) not in wanted_images
        ]
        for key in stale_files:
            del self._files[key]
        for key in stale_images:
            del self._images[key]
        return len(stale_files) + len(stale_images)

    # -- reading and writing ---------------------------------------------------------------------------------

    def dumps(self) -> str:
        document: dict = {"version": LOCK_VERSION}
        if self._files:
            document["file"] = [{key: getattr(pin, key) for key in _FILE_ROW} for pin in self.files]
        if self._images:
            document["image"] = [{key: getattr(pin, key) for key in _IMAGE_ROW} for pin in self.images]
        if self._stubs:
            document["stub"] = [{key: getattr(pin, key) for key in _STUB_ROW} for pin in self.stubs]
        return LOCK_HEADER + tomli_w.dumps(document)

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write atomically: a temporary file beside the target, fsync'd, then renamed over it."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("Lock.save() needs a path")
        text = self.dumps()
        try:
            fs.write_atomic(target, text, mode=0o644)
        except OSError as error:
            raise HostError(
                f"{target}: cannot write the lock file ({error.strerror}); check free space and permissions"
            ) from None
        self.path = target
        return target

    @classmethod
    def load(cls, path: str | os.PathLike) -> Lock:
        """Read bundle.lock; a missing file is an empty lock."""
        lock = cls(path)
        if not lock.path.exists():
            return lock
        text = read_toml_text(lock.path, "lock file", _REWRITE)
        _LockReader(lock, text).read(parse_toml(lock.path, text))
        return lock


class _LockReader:
    def __init__(self, lock: Lock, text: str):
        self.lock = lock
        self.lines = TomlLines(text)

    def fail(self, line: int, message: str) -> NoReturn:
        raise UsageError(f"{self.lock.path}:{line}: {message}")

    def read(self, data: dict) -> None:
        for key in data:
            if key not in ("version", "file", "image", "stub"):
                self.fail(self.lines.line((), key), f"unknown key '{key}' in the lock file; {_REWRITE}")
        version = data.get("version")
        if version != LOCK_VERSION:
            line = self.lines.line((), "version")
            if isinstance(version, int) and version > LOCK_VERSION:
                self.fail(
                    line, f"lock format {version} is newer than this bundler knows; upgrade bundler or {_REWRITE}"
                )
            shown = "missing" if version is None else f"{version!r}, not {LOCK_VERSION}"
            self.fail(line, f"lock format version is {shown}; {_REWRITE}")
        for index, row in enumerate(self.rows(data, "file")):
            pin = self.pin(FilePin, "file", index, row, _FILE_ROW)
            if pin.arch not in arches.NAMES:
                self.fail(self.lines.line(("file", index), "arch"), f"unknown architecture '{pin.arch}'; {_REWRITE}")
            self.check(pin, "file", index, "sha256", rules.is_sha256, "is not 64 lower-case hex digits")
            self.add(self.lock._files, (pin.path, pin.arch), pin, f"'{pin.path}' for arch '{pin.arch}'")
        for index, row in enumerate(self.rows(data, "image")):
            pin = self.pin(ImagePin, "image", index, row, _IMAGE_ROW)
            self.check(pin, "image", index, "digest", rules.is_digest, "is not sha256:<64 hex digits>")
            self.add(self.lock._images, (pin.name, pin.platform), pin, f"image '{pin.name}' for {pin.platform}")
        for index, row in enumerate(self.rows(data, "stub")):
            pin = self.pin(StubPin, "stub", index, row, _STUB_ROW)
            if pin.arch not in arches.NAMES:
                self.fail(self.lines.line(("stub", index), "arch"), f"unknown architecture '{pin.arch}'; {_REWRITE}")
            self.check(pin, "stub", index, "stub_sha256", rules.is_sha256, "is not 64 lower-case hex digits")
            self.add(self.lock._stubs, pin.arch, pin, f"the stub for arch '{pin.arch}'")

    def pin(self, kind, table, index, row, fields):
        return kind(*self.row(row, (table, index), fields), line=self.lines.line((table, index)))

    def check(self, pin, table, index, field, rule, problem):
        if not rule(getattr(pin, field)):
            self.fail(self.lines.line((table, index), field), f"{field} {problem}; {_REWRITE}")

    def add(self, pins, key, pin, what):
        first = pins.get(key)
        if first is not None:
            self.fail(pin.line, f"{what} is pinned twice (first at line {first.line}); {_REWRITE}")
        pins[key] = pin

    def rows(self, data: dict, key: str) -> list[dict]:
        rows = data.get(key, [])
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            self.fail(self.lines.line((), key), f"'{key}' must be an array of tables ([[{key}]]); {_REWRITE}")
        return rows

    def row(self, row: dict, table: tuple, keys: tuple) -> list[str]:
        for key in row:
            if key not in keys:
                self.fail(self.lines.line(table, key), f"unknown key '{key}' in [[{table[0]}]]; {_REWRITE}")
        values = []
        for key in keys:
            value = row.get(key)
            if not isinstance(value, str):
                problem = "is missing" if value is None else "must be a string"
                self.fail(self.lines.line(table, key), f"'{key}' in [[{table[0]}]] {problem}; {_REWRITE}")
            values.append(value)
        return values


def _where(path: Path | None, line: int, default: str) -> str:
    name = str(path) if path is not None else default
    return f"{name}:{line}" if line else name


def pin_for(manifest: Manifest, lock: Lock, file: FileSpec, arch: str, locked: bool = False) -> str | None:
    """The sha256 a download of `file` for `arch` must have: the manifest's, else the lock's, else None.

    The two disagreeing is an IntegrityError; with `locked`, a file pinned by neither is a UsageError.
    """
    source = manifest.source_for(file, arch)
    pinned = lock.file_sha256(file.path, arch, source.url)
    if source.sha256 is not None:
        if pinned is not None and pinned != source.sha256:
            row = lock.file_pin(file.path, arch)
            raise IntegrityError(
                f"{_where(lock.path, row.line, 'bundle.lock')}: '{file.path}' for arch '{arch}' is pinned to sha256 "
                f"{pinned}, but {_where(manifest.path, source.line, 'bundle.toml')} says {source.sha256}; "
                "correct the manifest's sha256, or remove it and run `bundler lock`"
            )
        return source.sha256
    if pinned is not None:
        return pinned
    if locked:
        raise UsageError(
            f"{manifest.path}:{file.line}: file '{file.path}' for arch '{arch}' is not pinned; "
            "run `bundler lock` (or add its sha256 to the manifest)"
        )
    return None


def image_pin_for(manifest: Manifest, lock: Lock, image: ImageSpec, arch: str, locked: bool = False) -> str | None:
    """The manifest digest `image` resolved to for `arch` in the lock, or None; with `locked`, None is a UsageError."""
    platform = image.platform_for(arch)
    digest = lock.image_digest(image.name, image.ref, platform)
    if digest is None and locked:
        raise UsageError(
            f"{manifest.path}:{image.line}: image '{image.name}' for {platform} is not pinned; run `bundler lock`"
        )
    return digest


def check_stub_pin(lock: Lock, arch: str, stub: Path, stub_sha256: str) -> None:
    """`make --locked`: the stub must be the one the lock pins for `arch` (a lock without a stub row leaves it free).

    Another stub is an IntegrityError, like a download that does not match its pin: the bytes are not the ones
    the lock was written with."""
    pin = lock.stub_pin(arch)
    if pin is not None and pin.stub_sha256 != stub_sha256:
        raise IntegrityError(
            f"{_where(lock.path, pin.line, 'bundle.lock')}: the {arch} stub is pinned to stub_sha256 "
            f"{pin.stub_sha256}, but {stub} has {stub_sha256}; build the stub as the lock's writer did "
            f"(docs/reproducible.md), or pin this one with `bundler lock --arch {arch} --stubs` (or --stub PATH)"
        )

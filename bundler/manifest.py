"""Load bundle.toml into frozen dataclasses; every error is one line naming the manifest line and the fix.

The schema is documented key by key in docs/manifest.md.
"""

from __future__ import annotations

import difflib
import os
import posixpath
import re
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from payload.errors import UsageError
from payload.oci.reference import parse_platform, parse_reference

ARCHS = ("amd64", "arm64", "arm", "riscv64")
DEFAULT_PLATFORMS = {
    "amd64": "linux/amd64",
    "arm64": "linux/arm64",
    "arm": "linux/arm/v7",
    "riscv64": "linux/riscv64",
}
# Names other tools use for our architectures, so a typo gets a precise hint instead of a fuzzy one.
ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "x64": "amd64",
    "aarch64": "arm64",
    "armv8": "arm64",
    "armhf": "arm",
    "armv7": "arm",
    "armv7l": "arm",
    "arm32": "arm",
    "riscv": "riscv64",
}
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".tar.zst", ".zip")
PLACEHOLDERS = ("{root}", "{images}", "{data}")
DEFAULT_GROUP = "files"
IMAGES_GROUP = "images"  # reserved: bundler/images.py puts the embedded images there
DEFAULT_MODE = 0o644
DEFAULT_VARIANT = "default"
EMBED_ALL = "all"
ARCHIVE_TRANSPORTS = ("oci-archive", "docker-archive")

_NAME = re.compile(r"[a-z][a-z0-9-]*\Z")
_NAME_RULE = "use lower-case letters, digits and '-', starting with a letter"
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]*\Z")
_MODE = re.compile(r"0?[0-7]{3}\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")

_TOP_KEYS = ("bundle", "file", "image", "variants")
_BUNDLE_KEYS = ("name", "version", "entrypoint", "description")
_FILE_KEYS = ("path", "mode", "group", "source")
_SOURCE_KEYS = ("url", "sha256", "extract")
_IMAGE_KEYS = ("name", "ref", "platform")
_VARIANT_KEYS = ("embed",)


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
        return self.platform or DEFAULT_PLATFORMS[arch]


@dataclass(frozen=True)
class Variant:
    name: str
    embed: tuple[str, ...]
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
            f"{self.path}: unknown variant '{name}'{_did_you_mean(name, self.variants)}; "
            f"choose one of: {', '.join(self.variants)}"
        )

    def embedded_images(self, variant: Variant | str | None = None) -> list[ImageSpec]:
        """The images `variant` carries, in manifest order; the others are pulled at run time."""
        chosen = variant if isinstance(variant, Variant) else self.variant(variant)
        return [image for image in self.images if image.name in chosen.embed]

    def resolve_url(self, source: Source) -> str:
        """resolve_url() as a method, for callers that hold the manifest."""
        return resolve_url(source)

    def groups(self) -> dict[str, list[FileSpec]]:
        """Files by compression group, groups and files in manifest order."""
        grouped: dict[str, list[FileSpec]] = {}
        for spec in self.files:
            grouped.setdefault(spec.group, []).append(spec)
        return grouped


def resolve_url(source: Source) -> str:
    """The URL to fetch: http(s) and file URLs as written, paths made absolute file:// URLs."""
    scheme = urllib.parse.urlsplit(source.url).scheme.lower()
    if scheme in ("http", "https", "file"):
        return source.url
    base = source.base_dir if source.base_dir is not None else Path.cwd()
    return Path(os.path.normpath(os.path.join(base, source.url))).as_uri()


def load_manifest(path: str | os.PathLike) -> Manifest:
    path = Path(path)
    text = read_toml_text(path, "manifest", "run bundler where bundle.toml is, or pass --manifest PATH")
    data = parse_toml(path, text)
    return _Reader(path, text).read(data)


# ---------------------------------------------------------------------------------------------------------------
# Reading TOML with positions (shared with lockfile.py)


def read_toml_text(path: Path, what: str, todo: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such {what}; {todo}") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a {what}; pass the path of the file") from None
    except OSError as error:
        raise UsageError(
            f"{path}: cannot read the {what} ({error.strerror}); check the path and its permissions"
        ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not valid UTF-8; save the {what} as UTF-8") from None


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\Z")
_TOML_AT_END = re.compile(r"\s*\(at end of document\)\Z")


def parse_toml(path: Path, text: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        position = _TOML_POSITION.search(message)
        at_end = _TOML_AT_END.search(message)
        unclosed = TomlLines(text).unclosed_line
        todo = "fix the syntax there"
        if position:
            line, what = int(position[1]), f"{message[: position.start()]} at column {position[2]}"
            if unclosed is not None and unclosed < line:
                # tomllib stumbles somewhere inside a bracket or string that was never closed: the cause is here.
                what = message[: position.start()]
                what += f" at line {line}, column {position[2]}, inside a value that opens here"
                line, todo = unclosed, "close its bracket or string"
        elif at_end:
            line, what = (
                unclosed or len(text.rstrip("\n").split("\n")),
                f"{message[: at_end.start()]} at the end of the file",
            )
            todo = "close the bracket or string that opens here"
        else:
            line, what = 1, message
        what = what[:1].lower() + what[1:]
        raise UsageError(f"{path}:{line}: invalid TOML: {what}; {todo}") from None


class TomlLines:
    """Best-effort map from TOML tables and keys to the lines that define them.

    tomllib keeps no positions, so this scans the raw text once for table headers and `key =` lines at the start
    of a statement, and follows values over several lines (arrays, multi-line strings). A table is a tuple of
    keys with the index of an array-of-tables element after its name: ("file", 2, "source", "amd64").
    """

    def __init__(self, text: str):
        self.lines = [line.rstrip("\r") for line in text.split("\n")]
        self._tables: dict[tuple, int] = {}
        self._keys: dict[tuple, list[int]] = {}  # (table, key) -> [first line, last line] of the value
        self.unclosed_line: int | None = None  # where a value opens that is never closed
        self._scan()

    def line(self, table: tuple, key: str | None = None) -> int:
        """The line of `key` in `table`, else of the table itself (header, or the key holding an inline table)."""
        if key is not None:
            path = table + (key,)
            if (table, key) in self._keys:
                return self._keys[(table, key)][0]
            # A key only ever written as part of longer headers, like 'variant' in [variant.online].
            below = [line for name, line in self._tables.items() if name[: len(path)] == path]
            if below:
                return min(below)
        while table:
            if table in self._tables:
                return self._tables[table]
            if (table[:-1], table[-1]) in self._keys:
                return self._keys[(table[:-1], table[-1])][0]
            table = table[:-1]
        return 1

    def value_line(self, table: tuple, key: str, item: str) -> int:
        """The line, within the value of `key`, that holds the string `item` (for items of multi-line arrays)."""
        span = self._keys.get((table, key))
        if span is None:
            return self.line(table, key)
        for number in range(span[0], span[1] + 1):
            text = self.lines[number - 1]
            if f'"{item}"' in text or f"'{item}'" in text:
                return number
        return span[0]

    def _scan(self) -> None:
        table: tuple = ()
        array_counts: dict[tuple, int] = {}
        depth, open_string, span = 0, None, None
        for number, line in enumerate(self.lines, 1):
            if depth or open_string:
                span[1] = number
                depth, open_string = _scan_value(line, 0, depth, open_string)
                if not (depth or open_string):
                    self.unclosed_line = None
                continue
            stripped = line.lstrip()
            if stripped.startswith("[["):
                parts, end = _parse_key(stripped, 2)
                if parts and stripped.startswith("]]", end):
                    name = self._resolve(parts, array_counts)
                    array_counts[name] = array_counts.get(name, 0) + 1
                    table = name + (array_counts[name] - 1,)
                    self._tables.setdefault(table, number)
            elif stripped.startswith("["):
                parts, end = _parse_key(stripped, 1)
                if parts and stripped.startswith("]", end):
                    table = self._resolve(parts, array_counts)
                    self._tables.setdefault(table, number)
            else:
                parts, end = _parse_key(stripped, 0)
                if parts and stripped.startswith("=", end):
                    for i in range(1, len(parts)):
                        self._keys.setdefault((table + tuple(parts[: i - 1]), parts[i - 1]), [number, number])
                    span = self._keys.setdefault((table + tuple(parts[:-1]), parts[-1]), [number, number])
                    depth, open_string = _scan_value(stripped, end + 1, 0, None)
                    if depth or open_string:
                        self.unclosed_line = number

    @staticmethod
    def _resolve(parts: list[str], array_counts: dict[tuple, int]) -> tuple:
        """Turn header keys into a table path, entering the latest element of each array of tables."""
        path: tuple = ()
        for part in parts[:-1]:
            path += (part,)
            if path in array_counts:
                path += (array_counts[path] - 1,)
        return path + (parts[-1],)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _parse_key(text: str, pos: int) -> tuple[list[str] | None, int]:
    """Parse a dotted key at `pos`; return its parts and the position after it (and its trailing blanks)."""
    parts = []
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if text.startswith('"', pos):
            end = pos + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            parts.append(text[pos + 1 : end].replace('\\"', '"').replace("\\\\", "\\"))
            pos = end + 1
        elif text.startswith("'", pos):
            end = text.find("'", pos + 1)
            if end < 0:
                return None, pos
            parts.append(text[pos + 1 : end])
            pos = end + 1
        else:
            match = _BARE_KEY.match(text, pos)
            if not match:
                return None, pos
            parts.append(match.group())
            pos = match.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if not text.startswith(".", pos):
            return parts, pos
        pos += 1


def _scan_value(text: str, pos: int, depth: int, open_string: str | None) -> tuple[int, str | None]:
    """Follow brackets and strings to the end of the line; return the bracket depth and any open multi-line string."""
    while pos < len(text):
        if open_string:
            if text[pos] == "\\" and open_string == '"""':
                pos += 2
                continue
            if text.startswith(open_string, pos):
                pos += 3
                while pos < len(text) and text[pos] == open_string[0]:
                    pos += 1
                open_string = None
                continue
            pos += 1
            continue
        char = text[pos]
        if char == "#":
            break
        if text.startswith('"""', pos) or text.startswith("'''", pos):
            open_string = text[pos : pos + 3]
            pos += 3
        elif char == '"':
            pos += 1
            while pos < len(text) and text[pos] != '"':
                pos += 2 if text[pos] == "\\" else 1
            pos += 1
        elif char == "'":
            end = text.find("'", pos + 1)
            pos = len(text) if end < 0 else end + 1
        else:
            if char in "[{":
                depth += 1
            elif char in "]}":
                depth = max(0, depth - 1)
            pos += 1
    return depth, open_string


# ---------------------------------------------------------------------------------------------------------------
# Validation


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_arch_name(arch: str) -> None:
    if arch not in ARCHS:
        hint = ARCH_ALIASES.get(arch) or (difflib.get_close_matches(arch, ARCHS, n=1) or [None])[0]
        did_you_mean = f" (did you mean '{hint}'?)" if hint else ""
        raise UsageError(f"unknown architecture '{arch}'{did_you_mean}; choose one of: {', '.join(ARCHS)}")


def _path_problem(path: str) -> str | None:
    """What is wrong with a path under the installed root, or None."""
    if not path:
        return "is empty; write a path relative to the installed root, like 'bin/hello'"
    if "\0" in path or "\n" in path:
        return "holds a NUL or newline character; rename it"
    if "\\" in path:
        forward = path.replace("\\", "/")
        return f"holds a backslash, which devices refuse; separate directories with '/', like '{forward}'"
    if path.startswith("/"):
        return f"is absolute; write it relative to the installed root, like '{path.lstrip('/') or 'bin/hello'}'"
    if ".." in path.split("/"):
        return "contains '..'; files must stay inside the installed root"
    normal = posixpath.normpath(path)
    if normal != path or normal == ".":
        return f"is not normalised; write '{normal}'" if normal != "." else "names the root itself; name a file"
    return None


class _Reader:
    def __init__(self, path: Path, text: str):
        self.path = path
        self.dir = Path(os.path.abspath(path)).parent
        self.lines = TomlLines(text)

    # -- helpers ---------------------------------------------------------------------------------------------

    def fail(self, line: int, message: str) -> NoReturn:
        raise UsageError(f"{self.path}:{line}: {message}")

    def check_keys(self, data: dict, allowed: tuple, table: tuple, display: str, hints: dict | None = None) -> None:
        for key in data:
            if key in allowed:
                continue
            line = self.lines.line(table, key)
            if hints and key in hints:
                self.fail(line, f"unknown key '{key}' in {display}; {hints[key]}")
            close = difflib.get_close_matches(key, allowed, n=1)
            close = close or [known for known in allowed if key.startswith(known) or known.startswith(key)]
            hint = f"did you mean '{close[0]}'?" if close else f"remove it (known keys: {', '.join(allowed)})"
            self.fail(line, f"unknown key '{key}' in {display}; {hint}")

    def string(self, data: dict, key: str, table: tuple, display: str, example: str, required: bool = True):
        if key not in data:
            if required:
                self.fail(self.lines.line(table), f"{display} has no '{key}'; add {key} = {example}")
            return None
        value = data[key]
        if not isinstance(value, str):
            self.fail(self.lines.line(table, key), f"{key} in {display} must be a string; write {key} = {example}")
        return value

    def table(self, value, table: tuple, display: str, todo: str) -> dict:
        if not isinstance(value, dict):
            self.fail(self.lines.line(table), f"{display} must be a table; {todo}")
        return value

    def array_of_tables(self, data: dict, key: str) -> list[dict]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.fail(
                self.lines.line((key,)),
                f"'{key}' must be an array of tables; write [[{key}]] (two brackets) before each entry",
            )
        return value

    # -- the manifest ----------------------------------------------------------------------------------------

    def read(self, data: dict) -> Manifest:
        misplaced = {key: "move it under [bundle]" for key in _BUNDLE_KEYS}
        self.check_keys(data, _TOP_KEYS, (), "the top level", misplaced)
        if "bundle" not in data:
            self.fail(1, "no [bundle] table; add [bundle] with name, version and entrypoint")
        bundle = self.table(data["bundle"], ("bundle",), "'bundle'", "write [bundle] on its own line")
        self.check_keys(bundle, _BUNDLE_KEYS, ("bundle",), "[bundle]")
        name = self.read_name(bundle)
        version = self.read_version(bundle)
        description = self.string(
            bundle, "description", ("bundle",), "[bundle]", '"what this bundle runs"', required=False
        )
        files = self.read_files(self.array_of_tables(data, "file"))
        entrypoint = self.read_entrypoint(bundle, files)
        images = self.read_images(self.array_of_tables(data, "image"))
        variants = self.read_variants(data.get("variants"), images)
        return Manifest(
            path=self.path,
            dir=self.dir,
            name=name,
            version=version,
            entrypoint=entrypoint,
            description=description,
            files=files,
            images=images,
            variants=variants,
        )

    def read_name(self, bundle: dict) -> str:
        name = self.string(bundle, "name", ("bundle",), "[bundle]", '"demo"')
        if not _NAME.match(name):
            self.fail(
                self.lines.line(("bundle",), "name"),
                f"bundle name '{name}' is not allowed; {_NAME_RULE}",
            )
        return name

    def read_version(self, bundle: dict) -> str:
        version = self.string(bundle, "version", ("bundle",), "[bundle]", '"1.0.0"')
        if not _VERSION.match(version):
            self.fail(
                self.lines.line(("bundle",), "version"),
                f"version '{version}' is not allowed; use letters, digits and '.+_-', starting with a letter or digit",
            )
        return version

    def read_entrypoint(self, bundle: dict, files: list[FileSpec]) -> list[str]:
        table = ("bundle",)
        line = self.lines.line(table, "entrypoint")
        if "entrypoint" not in bundle:
            self.fail(
                self.lines.line(table), '[bundle] has no \'entrypoint\'; add entrypoint = ["bin/program", "{root}"]'
            )
        entrypoint = bundle["entrypoint"]
        if not isinstance(entrypoint, list) or not entrypoint or not all(isinstance(item, str) for item in entrypoint):
            self.fail(
                line, 'entrypoint must be a non-empty list of strings; write entrypoint = ["bin/program", "--flag"]'
            )
        for item in entrypoint:
            for placeholder in _PLACEHOLDER.findall(item):
                if placeholder not in PLACEHOLDERS:
                    hint = _did_you_mean(placeholder, PLACEHOLDERS)
                    self.fail(
                        self.lines.value_line(table, "entrypoint", item),
                        f"unknown placeholder {placeholder} in entrypoint{hint}; use {{root}}, {{images}} or {{data}}",
                    )
        program = entrypoint[0]
        program_line = self.lines.value_line(table, "entrypoint", program)
        by_path = {spec.path: spec for spec in files}
        if _PLACEHOLDER.search(program) or program.startswith("/"):
            bare = program.replace("{root}", "").lstrip("/")
            self.fail(
                program_line,
                f"entrypoint program '{program}' must be a [[file]] path relative to the installed root; "
                f"write '{bare}'",
            )
        if program not in by_path:
            if not by_path:
                todo = f'add a [[file]] with path = "{program}"'
            else:
                hint = _did_you_mean(program, by_path)
                todo = f'use one of the [[file]] paths{hint}, or add a [[file]] with path = "{program}"'
            self.fail(program_line, f"entrypoint program '{program}' is not a [[file]] path; {todo}")
        spec = by_path[program]
        if not spec.mode & 0o111:
            self.fail(
                program_line,
                f"entrypoint program '{program}' is not executable (mode {spec.mode:04o}); "
                f'set mode = "0755" on its [[file]] (line {spec.line})',
            )
        return list(entrypoint)

    def read_files(self, raw_files: list[dict]) -> list[FileSpec]:
        files: list[FileSpec] = []
        seen: dict[str, int] = {}
        for index, raw in enumerate(raw_files):
            spec = self.read_file(index, raw)
            if spec.path in seen:
                self.fail(
                    spec.line,
                    f"duplicate file path '{spec.path}' (first at line {seen[spec.path]}); "
                    "give each [[file]] its own path",
                )
            seen[spec.path] = spec.line
            files.append(spec)
        for spec in files:
            parent = posixpath.dirname(spec.path)
            while parent:
                if parent in seen:
                    self.fail(
                        spec.line,
                        f"path '{spec.path}' lies under '{parent}', which is a [[file]] itself (line {seen[parent]}); "
                        "rename one of them",
                    )
                parent = posixpath.dirname(parent)
        return files

    def read_file(self, index: int, raw: dict) -> FileSpec:
        table = ("file", index)
        self.check_keys(raw, _FILE_KEYS, table, "[[file]]")
        path = self.string(raw, "path", table, "[[file]]", '"bin/program"')
        line = self.lines.line(table, "path")
        problem = _path_problem(path)
        if problem:
            self.fail(line, f"path '{path}' {problem}")

        mode = DEFAULT_MODE
        if "mode" in raw:
            text = raw["mode"]
            if not isinstance(text, str) or not _MODE.match(text):
                shown = f"'{text}'" if isinstance(text, str) else str(text)
                self.fail(
                    self.lines.line(table, "mode"),
                    f"mode {shown} of '{path}' is not an octal string; write mode = \"0755\"",
                )
            mode = int(text, 8)

        group = self.string(raw, "group", table, "[[file]]", '"tools"', required=False) or DEFAULT_GROUP
        if not _NAME.match(group):
            self.fail(
                self.lines.line(table, "group"),
                f"group '{group}' is not allowed; {_NAME_RULE}",
            )
        if group == IMAGES_GROUP:
            self.fail(
                self.lines.line(table, "group"),
                f"group '{group}' is where bundler keeps embedded images; choose another group name",
            )

        if "source" not in raw:
            self.fail(
                line,
                f"file '{path}' has no source; add source = {{ url = \"https://...\" }} or [file.source.<arch>] tables",
            )
        sources = self.read_sources(raw["source"], table + ("source",), path)
        return FileSpec(path=path, mode=mode, group=group, sources=sources, line=line)

    def read_sources(self, raw, table: tuple, path: str) -> dict[str, Source]:
        raw = self.table(raw, table, f"source of '{path}'", 'write source = { url = "https://..." }')
        if not raw:
            self.fail(
                self.lines.line(table), f"source of '{path}' is empty; give it a url, or [file.source.<arch>] tables"
            )
        arch_tables = [key for key, value in raw.items() if isinstance(value, dict)]
        if not arch_tables:
            hints = {arch: f'write [file.source.{arch}] with url = "..."' for arch in ARCHS}
            hints.update({alias: f"did you mean [file.source.{arch}]?" for alias, arch in ARCH_ALIASES.items()})
            self.check_keys(raw, _SOURCE_KEYS, table, "[file.source]", hints)
            return {"*": self.read_source(raw, table, "[file.source]")}
        if len(arch_tables) != len(raw):
            other = next(key for key in raw if key not in arch_tables)
            self.fail(
                self.lines.line(table, other),
                f"source of '{path}' mixes '{other}' with per-architecture tables; "
                "use one url for every architecture, or one table per architecture",
            )
        sources = {}
        for arch in raw:
            if arch not in ARCHS:
                hint = ARCH_ALIASES.get(arch)
                hints = {arch: f"did you mean '{hint}'?"} if hint else None
                self.check_keys({arch: None}, ARCHS, table, "[file.source]", hints)
            display = f"[file.source.{arch}]"
            sources[arch] = self.read_source(raw[arch], table + (arch,), display)
        return sources

    def read_source(self, raw: dict, table: tuple, display: str) -> Source:
        self.check_keys(raw, _SOURCE_KEYS, table, display)
        url = self.string(raw, "url", table, display, '"https://example.org/program"')
        url_line = self.lines.line(table, "url")
        problem = _url_problem(url)
        if problem:
            self.fail(url_line, problem)
        sha256 = self.string(raw, "sha256", table, display, '"<64 hex digits>"', required=False)
        if sha256 is not None and not _SHA256.match(sha256):
            self.fail(
                self.lines.line(table, "sha256"),
                "sha256 must be 64 lower-case hex digits; "
                "paste the output of sha256sum, or drop it and run `bundler lock`",
            )
        extract = self.string(raw, "extract", table, display, '"release-1.0/program"', required=False)
        if extract is not None:
            extract_line = self.lines.line(table, "extract")
            if not extract or extract.startswith("/") or ".." in extract.split("/"):
                self.fail(
                    extract_line,
                    f"extract '{extract}' must be a relative member path without '..'; "
                    "write it as the archive lists it",
                )
            archive_path = urllib.parse.urlsplit(url).path.lower()
            if not archive_path.endswith(ARCHIVE_SUFFIXES):
                self.fail(
                    extract_line,
                    f"extract needs an archive, but url '{url}' does not end in {', '.join(ARCHIVE_SUFFIXES)}; "
                    "point url at the release archive or drop extract",
                )
        return Source(url=url, sha256=sha256, extract=extract, base_dir=self.dir, line=url_line)

    def read_images(self, raw_images: list[dict]) -> list[ImageSpec]:
        images: list[ImageSpec] = []
        seen: dict[str, int] = {}
        for index, raw in enumerate(raw_images):
            table = ("image", index)
            self.check_keys(raw, _IMAGE_KEYS, table, "[[image]]")
            name = self.string(raw, "name", table, "[[image]]", '"pause"')
            line = self.lines.line(table, "name")
            if not _NAME.match(name):
                self.fail(
                    line,
                    f"image name '{name}' is not allowed; {_NAME_RULE}",
                )
            if name in seen:
                self.fail(
                    line,
                    f"duplicate image name '{name}' (first at line {seen[name]}); give each [[image]] its own name",
                )
            seen[name] = line
            ref = self.string(raw, "ref", table, "[[image]]", '"registry.k8s.io/pause:3.10"')
            problem = _ref_problem(ref)
            if problem:
                self.fail(self.lines.line(table, "ref"), problem)
            platform = self.string(raw, "platform", table, "[[image]]", '"linux/arm64"', required=False)
            if platform is not None:
                try:
                    parse_platform(platform)
                except UsageError:
                    self.fail(
                        self.lines.line(table, "platform"),
                        f"platform '{platform}' is not os/arch[/variant]; write it like \"linux/arm/v7\" or drop it",
                    )
            images.append(ImageSpec(name=name, ref=ref, platform=platform, base_dir=self.dir, line=line))
        return images

    def read_variants(self, raw, images: list[ImageSpec]) -> dict[str, Variant]:
        names = [image.name for image in images]
        if not raw:
            if raw is not None and not isinstance(raw, dict):
                self.fail(self.lines.line((), "variants"), "'variants' must be a table; write [variants.NAME] tables")
            return {DEFAULT_VARIANT: Variant(DEFAULT_VARIANT, tuple(names))}
        raw = self.table(raw, ("variants",), "'variants'", "write [variants.NAME] tables")
        variants: dict[str, Variant] = {}
        for name, body in raw.items():
            table = ("variants", name)
            line = self.lines.line(table)
            if not _NAME.match(name):
                self.fail(
                    line,
                    f"variant name '{name}' is not allowed; {_NAME_RULE}",
                )
            display = f"[variants.{name}]"
            body = self.table(body, table, display, f'write {display} with embed = [...] or embed = "all"')
            self.check_keys(body, _VARIANT_KEYS, table, display)
            variants[name] = Variant(name, self.read_embed(body, table, display, names), line=line)
        return variants

    def read_embed(self, body: dict, table: tuple, display: str, names: list[str]) -> tuple[str, ...]:
        embed = body.get("embed", [])
        line = self.lines.line(table, "embed")
        if embed == EMBED_ALL:
            return tuple(names)
        if not isinstance(embed, list) or not all(isinstance(item, str) for item in embed):
            self.fail(line, f'embed in {display} must be "all" or a list of image names; write embed = ["pause"]')
        for index, item in enumerate(embed):
            item_line = self.lines.value_line(table, "embed", item)
            if item not in names:
                declared = f"declared: {', '.join(names)}" if names else "none are declared"
                self.fail(
                    item_line,
                    f"{display} embeds '{item}', which is not an [[image]]{_did_you_mean(item, names)}; "
                    f"declare it or remove it ({declared})",
                )
            if item in embed[:index]:
                self.fail(item_line, f"{display} lists '{item}' twice; list each image once")
        return tuple(embed)


def _url_problem(url: str) -> str | None:
    if not url:
        return "url is empty; write an https:// URL or a path relative to the manifest"
    if url != url.strip():
        return f"url '{url}' has blanks around it; remove them"
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.netloc:
            return f"url '{url}' has no host; write it like {scheme}://example.org/program"
    elif scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            return (
                f"url '{url}' is not an absolute file URL; "
                "write file:///absolute/path, or a path relative to the manifest"
            )
    elif scheme:
        return (
            f"url scheme '{scheme}' is not supported; use https://, http://, file:// or a path relative to the manifest"
        )
    return None


def _ref_problem(ref: str) -> str | None:
    transport, _, rest = ref.partition(":")
    if transport in ARCHIVE_TRANSPORTS:
        if not rest:
            return f"image ref '{ref}' names no file; write {transport}:path/to/image.tar (relative to the manifest)"
        return None
    if "://" in ref:
        return f"image ref '{ref}' is not a reference; drop the scheme and write it like registry.k8s.io/pause:3.10"
    try:
        parse_reference(ref)
    except UsageError as error:
        return (
            f"{error.message}; write it like registry.k8s.io/pause:3.10, name@sha256:<64 hex>, "
            "oci-archive:PATH or docker-archive:PATH"
        )
    return None

"""Read bundle.toml into the data model; every error is one line naming the manifest line and the fix.

The schema is documented key by key in docs/manifest.md.
"""

from __future__ import annotations

import difflib
import os
import posixpath
import re
import urllib.parse
from pathlib import Path
from typing import NoReturn

from bundler.manifest.model import (
    ARCHIVE_SUFFIXES,
    ARCHIVE_TRANSPORTS,
    DEFAULT_GROUP,
    DEFAULT_VARIANT,
    EMBED_ALL,
    IMAGES_GROUP,
    FileSpec,
    ImageSpec,
    Manifest,
    Source,
    Variant,
    did_you_mean,
)
from bundler.manifest.toml_lines import TomlLines, parse_toml, read_toml_text
from payload import arches, rules
from payload.errors import UsageError
from payload.oci.reference import parse_platform, parse_reference

_TOP_KEYS = ("bundle", "file", "image", "variants", "update")
_BUNDLE_KEYS = ("name", "version", "entrypoint", "description", "min_glibc", "host_libs", "sbom")
_FILE_KEYS = ("path", "mode", "group", "source", "license")
_SOURCE_KEYS = ("url", "sha256", "extract")
_IMAGE_KEYS = ("name", "ref", "platform")
_VARIANT_KEYS = ("embed", "pull")
_UPDATE_KEYS = ("repository",) + rules.UPDATE_POLICY_KEYS


def load_manifest(path: str | os.PathLike) -> Manifest:
    path = Path(path)
    text = read_toml_text(path, "manifest", "run bundler where bundle.toml is, or pass --manifest PATH")
    data = parse_toml(path, text)
    return _Reader(path, text).read(data)


_BUNDLER_DIR = "bundler-dir"


def _path_problem(path: str) -> str | None:
    """What is wrong with a path under the installed root (the device's rule, payload/rules.py, and the build's
    own reserved directory), with a hint."""
    problem = rules.path_problem(path) or (_BUNDLER_DIR if rules.is_bundler_path(path) else None)
    if problem is None:
        return None
    if problem == rules.EMPTY:
        return "is empty; write a path relative to the installed root, like 'bin/hello'"
    if problem in (rules.NUL, rules.NEWLINE):
        return "holds a NUL or newline character; rename it"
    if problem == rules.BACKSLASH:
        forward = path.replace("\\", "/")
        return f"holds a backslash, which devices refuse; separate directories with '/', like '{forward}'"
    if problem == rules.ABSOLUTE:
        return f"is absolute; write it relative to the installed root, like '{path.lstrip('/') or 'bin/hello'}'"
    if problem == rules.DOTDOT:
        return "contains '..'; files must stay inside the installed root"
    if problem == rules.TOO_LONG:
        return f"is longer than the {rules.MAX_PATH_BYTES} bytes a device accepts; shorten it"
    if problem == rules.TOO_DEEP:
        return f"has more than the {rules.MAX_PATH_DEPTH} components a device accepts; flatten it"
    if problem == rules.RESERVED:
        return f"starts with '{rules.RESERVED_PREFIX}', a name the installer keeps for its own records; rename it"
    if problem == _BUNDLER_DIR:
        return f"lies under '{rules.BUNDLER_DIR}/', where bundler writes the bundle's own records (its SBOM); rename it"
    normal = posixpath.normpath(path)
    return f"is not normalised; write '{normal}'" if normal != "." else "names the root itself; name a file"


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
        min_glibc = self.read_min_glibc(bundle)
        host_libs = self.read_host_libs(bundle)
        update_repository, update_policy = self.read_update(data.get("update"), files)
        sbom = self.read_sbom(bundle)
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
            min_glibc=min_glibc,
            host_libs=host_libs,
            update_repository=update_repository,
            sbom=sbom,
            update_policy=update_policy,
        )

    def read_sbom(self, bundle: dict) -> str:
        text = self.string(bundle, "sbom", ("bundle",), "[bundle]", '"spdx"', required=False)
        if text is None:
            return rules.SBOM_FORMATS[0]
        if text not in rules.SBOM_FORMATS:
            self.fail(
                self.lines.line(("bundle",), "sbom"),
                f"sbom '{text}' is not a format bundler writes{did_you_mean(text, rules.SBOM_FORMATS)}; "
                f'write sbom = "spdx" (SPDX 2.3) or sbom = "cyclonedx" (CycloneDX 1.6)',
            )
        return text

    def read_license(self, raw: dict, table: tuple, path: str) -> str | None:
        text = self.string(raw, "license", table, "[[file]]", '"Apache-2.0"', required=False)
        if text is None:
            return None
        from bundler.sbom.licenses import license_problem

        problem = license_problem(text)
        if problem:
            self.fail(
                self.lines.line(table, "license"),
                f"license '{text}' of '{path}' {problem}; write an SPDX license id or expression, like "
                'license = "Apache-2.0" or "MIT OR Apache-2.0" (https://spdx.org/licenses/)',
            )
        return text

    def read_update(self, value, files: list[FileSpec]) -> tuple[str | None, dict]:
        """[update]: `repository`, where `./app --bundle-update` looks when it is given no REF, and the settings a
        device acts on after an update (probation, health check, retention; docs/fleet.md). Returns the
        repository and the settings that differ from their default."""
        if value is None:
            return None, {}
        update = self.table(value, ("update",), "[update]", "write [update] on its own line")
        self.check_keys(update, _UPDATE_KEYS, ("update",), "[update]")
        text = self.string(
            update, "repository", ("update",), "[update]", '"registry.example:5000/edge/demo:stable"', required=False
        )
        if text is not None and not rules.is_update_repository(text):
            self.fail(
                self.lines.line(("update",), "repository"),
                f"repository '{text}' is not REGISTRY/REPO[:TAG] (a tag, never a digest: devices follow it); "
                'write repository = "registry.example:5000/edge/demo:stable"',
            )
        examples = {
            "health": '["bin/check", "--quick"]',
            "health_delay": "30",
            "health_timeout": "60",
            "probation_starts": "3",
            "keep": "2",
        }
        policy = {}
        for key in rules.UPDATE_POLICY_KEYS:
            if key not in update:
                continue
            setting = update[key]
            problem = rules.update_setting_problem(key, setting)
            if problem is not None:
                self.fail(
                    self.lines.line(("update",), key), f"{key} in [update] {problem}; write {key} = {examples[key]}"
                )
            if key == "health" and setting[0] not in {spec.path for spec in files}:
                self.fail(
                    self.lines.line(("update",), key),
                    f"health command '{setting[0]}' is not a [[file]] path; the device runs it from the bundle: "
                    f'add a [[file]] with path = "{setting[0]}"',
                )
            if setting != rules.UPDATE_DEFAULTS[key]:
                policy[key] = setting
        return text, policy

    def read_min_glibc(self, bundle: dict) -> tuple[int, int] | None:
        text = self.string(bundle, "min_glibc", ("bundle",), "[bundle]", '"2.31"', required=False)
        if text is None:
            return None
        if not rules.is_glibc_version(text):
            self.fail(
                self.lines.line(("bundle",), "min_glibc"),
                f"min_glibc '{text}' is not a glibc version; write MAJOR.MINOR, e.g. min_glibc = \"2.31\"",
            )
        major, minor = text.split(".")
        return int(major), int(minor)

    def read_host_libs(self, bundle: dict) -> tuple[str, ...]:
        """[bundle] host_libs: sonames (globs allowed) the target provides; docs/devices.md, shared libraries."""
        value = bundle.get("host_libs", [])
        line = self.lines.line(("bundle",), "host_libs")
        example = 'host_libs = ["libcap.so.2", "libseccomp.so.*"]'
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(line, f"host_libs must be a list of library names; write {example}")
        for item in value:
            if not item or "/" in item or item != item.strip():
                self.fail(
                    self.lines.value_line(("bundle",), "host_libs", item),
                    f"host_libs entry '{item}' is not a library name (a soname like libcap.so.2, no directory); "
                    f"write {example}",
                )
        return tuple(value)

    def read_name(self, bundle: dict) -> str:
        name = self.string(bundle, "name", ("bundle",), "[bundle]", '"demo"')
        if not rules.is_name(name):
            self.fail(
                self.lines.line(("bundle",), "name"),
                f"bundle name '{name}' is not allowed; {rules.NAME_RULE}",
            )
        return name

    def read_version(self, bundle: dict) -> str:
        version = self.string(bundle, "version", ("bundle",), "[bundle]", '"1.0.0"')
        if not rules.is_version(version):
            self.fail(
                self.lines.line(("bundle",), "version"),
                f"version '{version}' is not allowed; {rules.VERSION_RULE}",
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
            for placeholder in rules.unknown_placeholders(item):
                hint = did_you_mean(placeholder, rules.PLACEHOLDERS)
                self.fail(
                    self.lines.value_line(table, "entrypoint", item),
                    f"unknown placeholder {placeholder} in entrypoint{hint}; use {{root}}, {{images}} or {{data}}",
                )
        program = entrypoint[0]
        program_line = self.lines.value_line(table, "entrypoint", program)
        by_path = {spec.path: spec for spec in files}
        if rules.placeholders(program) or program.startswith("/"):
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
                hint = did_you_mean(program, by_path)
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

        mode = rules.DEFAULT_MODE
        if "mode" in raw:
            text = raw["mode"]
            mode = rules.parse_mode(text)
            if mode is None:
                shown = f"'{text}'" if isinstance(text, str) else str(text)
                special = isinstance(text, str) and re.fullmatch(r"0*[1-7][0-7]{3}", text) is not None
                self.fail(
                    self.lines.line(table, "mode"),
                    f"mode {shown} of '{path}' sets setuid, setgid or sticky bits, which bundles refuse (an "
                    "installed file must not run with another user's rights, and devices install as root); "
                    f'write the permission bits only, like mode = "0{text[-3:]}"'
                    if special
                    else f"mode {shown} of '{path}' is not an octal string; write mode = \"0755\"",
                )
            elif not rules.is_mode(mode):
                self.fail(
                    self.lines.line(table, "mode"),
                    f"mode '{text}' of '{path}' lets other users write the installed file ({rules.MODE_RULE}: it "
                    "would run with the rights of whoever starts the bundle); "
                    f'write mode = "0{mode & ~rules.WRITABLE_BY_OTHERS:03o}"',
                )

        group = self.string(raw, "group", table, "[[file]]", '"tools"', required=False) or DEFAULT_GROUP
        if not rules.is_name(group):
            self.fail(
                self.lines.line(table, "group"),
                f"group '{group}' is not allowed; {rules.NAME_RULE}",
            )
        if group in (IMAGES_GROUP, rules.SBOM_GROUP):
            self.fail(
                self.lines.line(table, "group"),
                f"group '{group}' is where bundler keeps "
                f"{'embedded images' if group == IMAGES_GROUP else 'the SBOM'}; choose another group name",
            )

        if "source" not in raw:
            self.fail(
                line,
                f"file '{path}' has no source; add source = {{ url = \"https://...\" }} or [file.source.<arch>] tables",
            )
        sources = self.read_sources(raw["source"], table + ("source",), path)
        license = self.read_license(raw, table, path)
        return FileSpec(path=path, mode=mode, group=group, sources=sources, line=line, license=license)

    def read_sources(self, raw, table: tuple, path: str) -> dict[str, Source]:
        raw = self.table(raw, table, f"source of '{path}'", 'write source = { url = "https://..." }')
        if not raw:
            self.fail(
                self.lines.line(table), f"source of '{path}' is empty; give it a url, or [file.source.<arch>] tables"
            )
        arch_tables = [key for key, value in raw.items() if isinstance(value, dict)]
        if not arch_tables:
            hints = {arch.name: f'write [file.source.{arch.name}] with url = "..."' for arch in arches.TABLE}
            hints.update(
                {alias: f"did you mean [file.source.{arch.name}]?" for arch in arches.TABLE for alias in arch.aliases}
            )
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
            if arches.get(arch) is None:
                hint = arches.canonical(arch)
                hints = {arch: f"did you mean '{hint}'?"} if hint else None
                self.check_keys({arch: None}, arches.NAMES, table, "[file.source]", hints)
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
        if sha256 is not None and not rules.is_sha256(sha256):
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
            if not rules.is_name(name):
                self.fail(
                    line,
                    f"image name '{name}' is not allowed; {rules.NAME_RULE}",
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
            if not rules.is_name(name):
                self.fail(
                    line,
                    f"variant name '{name}' is not allowed; {rules.NAME_RULE}",
                )
            display = f"[variants.{name}]"
            body = self.table(body, table, display, f'write {display} with embed = [...] or embed = "all"')
            self.check_keys(body, _VARIANT_KEYS, table, display)
            embed = self.read_embed(body, table, display, names)
            variants[name] = Variant(name, embed, self.read_pull(body, table, display), line=line)
        return variants

    def read_pull(self, body: dict, table: tuple, display: str) -> str:
        pull = body.get("pull", rules.PULL_BACKGROUND)
        if pull not in rules.PULL_MODES:
            choices = " or ".join(f'"{mode}"' for mode in rules.PULL_MODES)
            self.fail(
                self.lines.line(table, "pull"),
                f'pull in {display} must be {choices}; write pull = "{rules.PULL_BEFORE_START}" or leave it out',
            )
        return pull

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
                    f"{display} embeds '{item}', which is not an [[image]]{did_you_mean(item, names)}; "
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

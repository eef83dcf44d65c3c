"""The launcher among the stub's SBOM components: a stub with a `bootloader` section (the launcher's ELF file in
front of PyInstaller's bootloader) lists it, the musl linked into it with its version and MIT, and the zig that
compiled it as a build tool, even when its components were recorded before the launcher was listed; a stub
without that section lists none of them. The stand-in stub is /bin/true with the sections added by the ELF writer
that puts real stubs together; the versions are those of the installed `ziglang` package."""

import json
import re
from importlib import metadata
from pathlib import Path

from bundler import __version__
from bundler.sbom.stub import BUILD_TOOL, LAUNCHER, RECORD_SUFFIX, RUNTIME, describe
from bundler.stubs.launcher import musl_version
from payload.elf import insert_section
from payload.layout import BOOTLOADER

OLD_RECORD = {"kind": "host", "components": [{"name": "python", "version": "3.11.7", "purl": None, "role": RUNTIME}]}


def _with_record(stub, path):
    path.write_bytes(stub.read_bytes())
    Path(str(path) + RECORD_SUFFIX).write_text(json.dumps(OLD_RECORD))
    return path


def test_a_stub_with_a_launcher_lists_it_with_musl_and_zig(plain_stub, tmp_path):
    bootloader = tmp_path / "bootloader"
    bootloader.write_bytes(b"\x7fELF stand-in for PyInstaller's bootloader")
    stub = tmp_path / "stub"
    insert_section(str(plain_stub), str(stub), BOOTLOADER, str(bootloader), before="pydata")
    kind, found = describe(_with_record(stub, tmp_path / "recorded"), "host")
    parts = {c.name: c for c in found}
    assert kind == "host" and parts["python"].version == "3.11.7"  # the record is kept
    assert parts[LAUNCHER].version == __version__ and parts[LAUNCHER].role == RUNTIME
    musl = parts["musl"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", musl.version) and musl.version == musl_version()
    assert musl.license == "MIT" and musl.purl == f"pkg:generic/musl@{musl.version}"
    zig = parts["ziglang"]
    assert (zig.version, zig.role) == (metadata.version("ziglang"), BUILD_TOOL)
    assert zig.purl == f"pkg:pypi/ziglang@{zig.version}"


def test_a_stub_without_a_launcher_lists_none(plain_stub, tmp_path):
    _, found = describe(_with_record(plain_stub, tmp_path / "recorded"), "host")
    assert [c.name for c in found] == ["python"]

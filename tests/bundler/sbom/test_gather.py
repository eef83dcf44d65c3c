"""The SBOM `bundler make` writes (around a stand-in stub, so without its components): SPDX 2.3 checked by
spdx-tools' own parser and validator (`pyspdxtools`), CycloneDX 1.6 by cyclonedx-python-lib's strict JSON schema
validator; every file with its path, sha256, size, source, purl and license; the same bytes inside the bundle
(`bundler inspect --sbom`) as beside it; damage to it inside the bundle is an integrity error."""

import json
import random

import pytest

from payload.layout import open_payload
from payload.rules import SBOM_GROUP, SBOM_PATHS
from testing.faults import sha256_of
from testing.helpers import bundler, flip_byte
from testing.http_server import FileServer
from testing.sbom import FILES, check_cyclonedx, check_spdx, packaged_tool

MANIFEST = (
    """[bundle]
name = "demo"
version = "1.0.0"
entrypoint = ["bin/hello"]
host_libs = ["*"]  # bin/tool, a Debian package's binary, needs the libraries of its host
{sbom}

"""
    + FILES
)


@pytest.fixture
def project(tmp_path, plain_stub):
    """A local file, a download from a real HTTP server on 127.0.0.1, and a file a Debian package installed."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "data.bin").write_bytes(random.Random(5).randbytes(100_000))
    work = tmp_path / "project"
    work.mkdir()
    (work / "hello").write_text("#!/bin/sh\necho hello\n")
    tool = packaged_tool()
    with FileServer(www) as server:

        def make(name, sbom="", *extra, env=None):
            text = MANIFEST.format(sbom=sbom, license="MIT", data=server.url("data.bin"), tool=tool)
            (work / "bundle.toml").write_text(text)
            out = work / name
            options = ("--stub", plain_stub, "--cache-dir", work / "cache", "--level", "3", "-o", out, *extra)
            bundler("make", *options, cwd=work, env=env)
            return out

        yield make, server, tool


def test_spdx_by_default_valid_and_inside_the_bundle_as_beside_it(project):
    make, server, tool = project
    out = make("app")
    beside = out.with_name("app.spdx.json")
    check_spdx(beside)
    assert bundler("inspect", "--sbom", out).stdout.encode() == beside.read_bytes()
    doc = json.loads(beside.read_text())
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["creationInfo"]["created"] == "1970-01-01T00:00:00Z"
    packages = {p["name"]: p for p in doc["packages"]}
    hello, data, packaged = packages["bin/hello"], packages["share/data.bin"], packages["bin/tool"]
    assert hello["checksums"] == [{"algorithm": "SHA256", "checksumValue": sha256_of(out.parent / "hello")}]
    assert hello["licenseDeclared"] == "MIT" and hello["sourceInfo"] == f"from {out.parent / 'hello'}"
    assert hello["comment"].startswith(f"size {(out.parent / 'hello').stat().st_size} bytes, mode 0755")
    assert data["sourceInfo"] == f"from {server.url('data.bin')}"
    assert data["checksums"][0]["checksumValue"] == sha256_of(server.root / "data.bin")
    assert data["comment"].startswith("size 100000 bytes")
    refs = [r["referenceLocator"] for r in packaged["externalRefs"]]
    assert len(refs) == 1 and refs[0].startswith("pkg:deb/debian/") and packaged["licenseDeclared"] != "NOASSERTION"
    contained = {r["relatedSpdxElement"] for r in doc["relationships"] if r["spdxElementId"] == "SPDXRef-Bundle"}
    assert {hello["SPDXID"], data["SPDXID"], packaged["SPDXID"], "SPDXRef-Stub"} <= contained


def test_cyclonedx_on_request_is_valid(project):
    make, _, _ = project
    out = make("app", "", "--sbom-format", "cyclonedx")
    text = out.with_name("app.cdx.json").read_text()
    check_cyclonedx(text)
    assert bundler("inspect", "--sbom", out).stdout == text
    doc = json.loads(text)
    assert doc["specVersion"] == "1.6" and doc["metadata"]["component"]["name"] == "demo"
    files = {c["name"]: c for c in doc["components"] if c["type"] == "file"}
    assert files["bin/hello"]["licenses"] == [{"expression": "MIT"}]
    props = {p["name"]: p["value"] for p in files["share/data.bin"]["properties"]}
    assert props["bundler:size"] == "100000" and props["bundler:source"].endswith("/data.bin")
    # The manifest's key chooses it too, and the SBOM is the only entry of its own group, at its reserved path.
    out = make("app2", 'sbom = "cyclonedx"')
    with open(out, "rb") as f:
        index = open_payload(str(out), f).index
    assert [e.path for e in index.entries_of(SBOM_GROUP)] == [SBOM_PATHS["cyclonedx"]]


def test_the_sbom_is_the_same_for_the_same_inputs_and_takes_its_time_from_source_date_epoch(project):
    make, _, _ = project
    first, again = make("app"), make("again")
    assert sha256_of(first) == sha256_of(again)  # inside the bundle: no wall-clock time, no random id
    dated = make("dated", env={"SOURCE_DATE_EPOCH": "1767225600"})
    assert json.loads(dated.with_name("dated.spdx.json").read_text())["creationInfo"]["created"] == (
        "2026-01-01T00:00:00Z"
    )


def test_damage_to_the_sbom_inside_the_bundle_is_an_integrity_error(project):
    make, _, _ = project
    out = make("app")
    with open(out, "rb") as f:
        payload = open_payload(str(out), f)
        (group,) = [g for g in payload.index.groups if g.name == SBOM_GROUP]
        offset = payload.data_offset + group.frames[0].offset + group.frames[0].csize // 2
    flip_byte(out, offset)
    result = bundler("inspect", "--sbom", out, check=False)
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""

"""The SBOM end to end: a bundle of a local file, a download served on loopback, a file a Debian package
installed and two images from a real registry (Debian's docker-registry), made with the real frozen stub. SPDX 2.3
is checked by spdx-tools' parser and validator (`pyspdxtools`), CycloneDX 1.6 by cyclonedx-python-lib's strict
JSON schema validator; `bundler inspect --sbom` and the device's `./app --bundle-sbom` print the bytes written
beside the bundle."""

import base64
import hashlib
import json
import random

import pytest
from packageurl import PackageURL

from bundler import __version__ as bundler_version
from testing.helpers import bundler, run
from testing.http_server import FileServer
from testing.registry import Registry, push
from testing.sbom import FILES, check_cyclonedx, check_spdx, packaged_tool

MANIFEST = (
    """[bundle]
name = "sbomdemo"
version = "2.0.0"
entrypoint = ["bin/hello"]
host_libs = ["*"]  # bin/tool, a Debian package's binary, needs the libraries of its host

"""
    + FILES
    + """
[[image]]
name = "base"
ref = "{host}/test/busybox:1"

[[image]]
name = "derived"
ref = "{host}/test/derived:1"

[variants.offline]
embed = "all"

[variants.online]
embed = ["base"]
"""
)


@pytest.fixture(scope="module")
def registry(tmp_path_factory, image_layout):
    reg = Registry(tmp_path_factory.mktemp("sbom-registry")).start()
    push(image_layout, "base", reg, "test/busybox:1")
    push(image_layout, "derived", reg, "test/derived:1")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory, registry):
    tool = packaged_tool()
    work = tmp_path_factory.mktemp("sbom-project")
    www = work / "www"
    www.mkdir()
    (www / "data.bin").write_bytes(random.Random(7).randbytes(50_000))
    (work / "hello").write_text('#!/bin/sh\necho "hello $*"\n')
    with FileServer(www) as server:
        text = MANIFEST.format(license="Apache-2.0", data=server.url("data.bin"), tool=tool, host=registry.host)
        (work / "bundle.toml").write_text(text)
        yield work, server, tool


def make(project, stub, cache_dir, registry, variant, *extra):
    work = project[0]
    out = work / "dist" / variant
    bundler(
        "make",
        "--stub",
        stub,
        "--variant",
        variant,
        "--cache-dir",
        cache_dir,
        "--level",
        "3",
        "--insecure-registry",
        registry.host,
        "-o",
        out,
        *extra,
        cwd=work,
    )
    return out


def test_spdx_of_files_images_and_the_stub_is_valid_and_the_device_prints_it(
    project, stub_path, cache_dir, registry, image_layout, tmp_path
):
    out = make(project, stub_path, cache_dir, registry, "offline")
    beside = out.with_name("offline.spdx.json")
    check_spdx(beside)
    doc = json.loads(beside.read_text())
    packages = {p["SPDXID"]: p for p in doc["packages"]}
    by_name = {p["name"]: p for p in doc["packages"]}

    def purls(p):
        return [r["referenceLocator"] for r in p.get("externalRefs", []) if r["referenceType"] == "purl"]

    assert by_name["bin/hello"]["licenseDeclared"] == "Apache-2.0"
    assert by_name["share/data.bin"]["sourceInfo"] == f"from {project[1].url('data.bin')}"
    assert purls(by_name["bin/tool"])[0].startswith("pkg:deb/debian/")
    children = {}
    for r in doc["relationships"]:
        if r["relationshipType"] == "CONTAINS":
            children.setdefault(r["spdxElementId"], []).append(r["relatedSpdxElement"])
    for name, tag in (("base", "base"), ("derived", "derived")):
        image = by_name[name]
        digest = image_layout.manifest_digest(tag)
        assert image["versionInfo"] == digest
        (purl,) = [PackageURL.from_string(p) for p in purls(image)]
        assert (purl.type, purl.version) == ("oci", digest)
        assert purl.qualifiers["repository_url"] == f"{registry.host}/test/{'busybox' if tag == 'base' else tag}"
        layers = [packages[i] for i in children[image["SPDXID"]]]
        assert layers and all(layer["checksums"][0]["algorithm"] == "SHA256" for layer in layers)
    # The derived image holds the base layer and its own: two layers; the base one.
    assert len(children[by_name["derived"]["SPDXID"]]) == 2 and len(children[by_name["base"]["SPDXID"]]) == 1
    stub_parts = {packages[i]["name"]: packages[i] for i in children["SPDXRef-Stub"]}
    for part in ("python", "openssl", "pyinstaller", "zstandard", "requests"):
        assert stub_parts[part].get("versionInfo"), part
    import importlib.metadata

    assert stub_parts["zstandard"]["versionInfo"] == importlib.metadata.version("zstandard")
    assert purls(stub_parts["requests"]) == [f"pkg:pypi/requests@{importlib.metadata.version('requests')}"]
    # The launcher at the stub's front is ours, with the musl linked into it (MIT); the zig that compiled it is a
    # build tool of the stub.
    assert stub_parts["bundler-launcher"]["versionInfo"] == bundler_version
    musl = stub_parts["musl"]
    assert musl["licenseDeclared"] == "MIT" and purls(musl) == [f"pkg:generic/musl@{musl['versionInfo']}"]
    tools = [
        packages[r["spdxElementId"]]
        for r in doc["relationships"]
        if r["relationshipType"] == "BUILD_TOOL_OF" and r["relatedSpdxElement"] == "SPDXRef-Stub"
    ]
    assert [(t["name"], t["versionInfo"]) for t in tools] == [("ziglang", importlib.metadata.version("ziglang"))]
    # The provenance beside it names both images and the stub by their digests.
    envelope = json.loads(out.with_name("offline.intoto.json").read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    deps = {d["name"]: d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}
    for name, tag in (("base", "base"), ("derived", "derived")):
        assert deps[f"image:{name}"]["digest"]["sha256"] == image_layout.manifest_digest(tag).partition(":")[2]
    assert deps["stub"]["digest"]["sha256"] == hashlib.sha256(stub_path.read_bytes()).hexdigest()
    # Inside the bundle, byte for byte: read back by bundler, and by the frozen stub on the device.
    assert bundler("inspect", "--sbom", out).stdout.encode() == beside.read_bytes()
    device = run([out, "--bundle-sbom"], env={"BUNDLE_DIR": str(tmp_path / "root")})
    assert device.returncode == 0 and device.stdout.encode() == beside.read_bytes(), device.stderr
    assert not (tmp_path / "root").exists()  # printing the SBOM installs nothing


def test_cyclonedx_lists_the_layers_of_an_image_the_device_pulls(project, stub_path, cache_dir, registry, image_layout):
    out = make(project, stub_path, cache_dir, registry, "online", "--sbom-format", "cyclonedx")
    text = out.with_name("online.cdx.json").read_text()
    check_cyclonedx(text)
    assert run([out, "--bundle-sbom"]).stdout == text
    doc = json.loads(text)
    images = {c["name"]: c for c in doc["components"] if c["type"] == "container"}
    derived = images["derived"]
    props = {p["name"]: p["value"] for p in derived["properties"]}
    assert props["bundler:embedded"] == "false" and derived["version"] == image_layout.manifest_digest("derived")
    served = [layer["digest"] for layer in image_layout.manifest("derived")["layers"]]
    assert [c["version"] for c in derived["components"]] == served  # as the registry serves them (gzip)
    stub = next(c for c in doc["components"] if c["name"] == "bundler-stub")
    assert {c["name"] for c in stub["components"]} >= {"python", "openssl", "pyinstaller", "zstandard", "requests"}
    parts = {c["name"]: c for c in stub["components"]}
    assert parts["bundler-launcher"]["type"] == "application"
    assert parts["musl"]["licenses"] == [{"expression": "MIT"}]
    zig = {p["name"]: p["value"] for p in parts["ziglang"]["properties"]}
    assert parts["ziglang"]["type"] == "application" and zig["bundler:role"] == "build-tool"

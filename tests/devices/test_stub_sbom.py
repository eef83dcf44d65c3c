"""The SBOM of a bundle made with the portable amd64 stub: the stub's Python and OpenSSL are the Debian packages of
the root it was built in, with their versions, and every other package of that root is listed as a build tool of
the stub; the record the build wrote beside the stub gives the same components to `make --stub PATH`. Checked by
spdx-tools' validator (`pyspdxtools`)."""

import json
from pathlib import Path

import pytest

from bundler.sbom.stub import RECORD_SUFFIX, dpkg_packages
from testing.devices import PORTABLE, portable_stub, require_root_tools, roots_cache, write_project
from testing.helpers import bundler
from testing.sbom import check_spdx

pytestmark = pytest.mark.slow


def _stub_packages(doc):
    """{name: package} of what the stub CONTAINS, and the names of the packages that are BUILD_TOOL_OF it."""
    packages = {p["SPDXID"]: p for p in doc["packages"]}
    contained, tools = {}, set()
    for r in doc["relationships"]:
        if r["relationshipType"] == "CONTAINS" and r["spdxElementId"] == "SPDXRef-Stub":
            contained[packages[r["relatedSpdxElement"]]["name"]] = packages[r["relatedSpdxElement"]]
        if r["relationshipType"] == "BUILD_TOOL_OF" and r["relatedSpdxElement"] == "SPDXRef-Stub":
            tools.add(packages[r["spdxElementId"]]["name"])
    return contained, tools


def _purl(package):
    return next(r["referenceLocator"] for r in package["externalRefs"] if r["referenceType"] == "purl")


def test_the_portable_stub_is_listed_with_the_debian_root_it_was_built_in(cache_dir, tmp_path):
    require_root_tools("amd64")
    cache = roots_cache(cache_dir)
    stub, root, _ = portable_stub(cache, "amd64")
    debs = dpkg_packages(root)
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\necho hello\n")
    project = write_project(tmp_path / "p", {"bin/hello": script}, ["bin/hello"])
    out = tmp_path / "app"
    bundler("make", "--cache-dir", cache, "--level", "3", "-o", out, cwd=project, env=PORTABLE)
    check_spdx(out.with_name("app.spdx.json"))
    contained, tools = _stub_packages(json.loads(out.with_name("app.spdx.json").read_text()))
    python, openssl = contained["python"], contained["openssl"]
    assert python["versionInfo"].startswith("3.9.") and _purl(python).startswith("pkg:deb/debian/libpython3.9@")
    assert _purl(openssl).startswith("pkg:deb/debian/libssl")
    for name in ("pyinstaller", "zstandard", "requests"):
        assert _purl(contained[name]) == f"pkg:pypi/{name}@{contained[name]['versionInfo']}"
    # All the root's packages but the two the stub itself carries, and the zig that compiled its launcher.
    assert "libc6" in tools and "ziglang" in tools and len(tools) == len(debs) - 2 + 1
    assert contained["musl"]["licenseDeclared"] == "MIT" and "bundler-launcher" in contained
    # The build recorded them beside the stub: a make given the stub's path lists the same components.
    assert Path(str(stub) + RECORD_SUFFIX).is_file()
    again = tmp_path / "again"
    bundler("make", "--stub", stub, "--cache-dir", cache, "--level", "3", "-o", again, cwd=project, env=PORTABLE)
    assert _stub_packages(json.loads(again.with_name("again.spdx.json").read_text())) == (contained, tools)

"""What a source says about itself: purls from download URLs, the Debian package that installed a local file
(this host's real dpkg database), and the license a Debian copyright file gives."""

from pathlib import Path

import pytest

from bundler.sbom import purls
from bundler.sbom.licenses import debian_copyright_license, license_problem
from testing.sbom import packaged_tool


@pytest.mark.parametrize(
    "url, purl, version",
    [
        (
            "https://github.com/containers/crun/releases/download/1.14/crun-1.14-linux-amd64",
            "pkg:github/containers/crun@1.14",
            "1.14",
        ),
        (
            "http://deb.debian.org/debian/pool/main/c/crun/crun_1.8.1-1%2Bdeb12u1_amd64.deb",
            "pkg:deb/debian/crun@1.8.1-1%2Bdeb12u1?arch=amd64",
            "1.8.1-1+deb12u1",
        ),
        (
            "https://files.pythonhosted.org/packages/f9/9b/requests-2.32.3-py3-none-any.whl",
            "pkg:pypi/requests@2.32.3",
            "2.32.3",
        ),
        (
            "https://files.pythonhosted.org/packages/ed/d4/Zstandard_Py-0.25.0.tar.gz",
            "pkg:pypi/zstandard-py@0.25.0",
            "0.25.0",
        ),
    ],
)
def test_a_url_that_names_its_package_gives_its_purl(url, purl, version):
    found = purls.for_url(url)
    assert found.purl == purl and found.version == version


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/crun",
        "https://github.com/containers/crun/archive/refs/tags/1.14.tar.gz",  # a source archive, not a release asset
        "http://127.0.0.1:8000/pool/crun",
    ],
)
def test_a_url_that_names_no_package_gives_none(url):
    assert purls.for_url(url) is None


def test_a_local_file_a_debian_package_installed_is_that_package_with_its_license():
    path = packaged_tool()
    found = purls.for_local_file(path)
    assert found is not None and found.purl.startswith(f"pkg:deb/debian/{found.name}@")
    copyright_file = Path("/usr/share/doc") / found.name / "copyright"
    assert found.license == debian_copyright_license(copyright_file.read_text())
    assert found.license is not None and license_problem(found.license) is None


def test_an_edited_copy_of_a_packaged_file_is_not_claimed_as_the_package(tmp_path):
    path = packaged_tool()
    owner = purls.for_local_file(path).name
    listed = str(path) if purls._dpkg_owner(str(path)) else str(path.resolve())
    # The package's md5sums line decides: the same bytes hold, one more byte does not (the host's file itself is
    # never touched: other tests run it).
    copy, edited = tmp_path / "copy", tmp_path / "edited"
    copy.write_bytes(path.read_bytes())
    edited.write_bytes(path.read_bytes() + b"\0")
    assert purls._as_shipped("/", owner, listed, str(copy))
    assert not purls._as_shipped("/", owner, listed, str(edited))


def test_a_file_no_package_installed_is_no_package(tmp_path):
    (tmp_path / "mine").write_text("#!/bin/sh\n")
    assert purls.for_local_file(tmp_path / "mine") is None


COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: demo

Files: debian/*
License: MIT

Files: *
Copyright: 2020 Someone
License: {license}
 Some text.
"""


@pytest.mark.parametrize(
    "license, spdx",
    [
        ("Apache-2.0", "Apache-2.0"),
        ("GPL-2+", "GPL-2.0-or-later"),
        ("BSD-3-clause or GPL-2", "BSD-3-Clause OR GPL-2.0-only"),
        ("public-domain", None),  # not an SPDX id: no license is claimed
    ],
)
def test_the_license_of_a_machine_readable_copyright_file_is_the_one_of_files_star(license, spdx):
    assert debian_copyright_license(COPYRIGHT.format(license=license)) == spdx


def test_a_copyright_file_that_is_not_machine_readable_gives_no_license():
    assert debian_copyright_license("This package was debianized by someone.\nLicense: MIT\n") is None

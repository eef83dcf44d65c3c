"""What the SBOM tests share: a manifest's files of every kind of source (a local file with a declared license, a
download, a file a Debian package installed on this host), and the reference validators."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FILES = """[[file]]
path = "bin/hello"
mode = "0755"
source = {{ url = "hello" }}
license = "{license}"

[[file]]
path = "share/data.bin"
source = {{ url = "{data}" }}

[[file]]
path = "bin/tool"
mode = "0755"
source = {{ url = "{tool}" }}
"""


def packaged_tool():
    """A file a Debian package installed on this host (so dpkg knows its package, version and copyright)."""
    for path in ("/usr/bin/crun", "/usr/bin/zstd", "/bin/true"):
        if Path(path).is_file() and shutil.which("dpkg-query"):
            return Path(path)
    pytest.skip(reason="needs dpkg and a file a Debian package installed")


def check_spdx(path):
    """spdx-tools' own parser and validator, as its CLI runs them: fails the test on any message."""
    pyspdxtools = Path(sys.executable).with_name("pyspdxtools")
    checked = subprocess.run([pyspdxtools, "-i", str(path)], capture_output=True, text=True)
    said = checked.stdout + checked.stderr
    assert checked.returncode == 0 and said == "", said


def check_cyclonedx(text):
    """cyclonedx-python-lib's strict JSON schema validator for CycloneDX 1.6."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None

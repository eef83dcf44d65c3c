"""The manifest's SBOM keys: `[bundle] sbom`, a file's `license` (an SPDX expression), and the paths and group the
SBOM itself takes, which no [[file]] may use."""

import pytest

from bundler.manifest import load_manifest
from payload import rules
from payload.errors import UsageError

HEAD = """[bundle]
name = "demo"
version = "1.0.0"
entrypoint = ["bin/hello"]
{bundle}
[[file]]
path = "bin/hello"
mode = "0755"
source = {{ url = "hello" }}
{file}
"""


def load(tmp_path, bundle="", file=""):
    path = tmp_path / "bundle.toml"
    path.write_text(HEAD.format(bundle=bundle, file=file))
    return load_manifest(path)


def refused(tmp_path, **parts):
    with pytest.raises(UsageError) as caught:
        load(tmp_path, **parts)
    return str(caught.value)


def test_spdx_is_the_default_and_cyclonedx_is_taken(tmp_path):
    assert load(tmp_path).sbom == "spdx"
    assert load(tmp_path, bundle='sbom = "cyclonedx"').sbom == "cyclonedx"


def test_an_unknown_sbom_format_is_refused_at_its_line(tmp_path):
    message = refused(tmp_path, bundle='sbom = "cyclone"')
    assert message.startswith(f"{tmp_path / 'bundle.toml'}:5: sbom 'cyclone' is not a format")
    assert "did you mean 'cyclonedx'" in message


@pytest.mark.parametrize("text", ["Apache-2.0", "MIT OR Apache-2.0", "GPL-2.0-or-later WITH Classpath-exception-2.0"])
def test_a_file_license_is_an_spdx_expression(tmp_path, text):
    assert load(tmp_path, file=f'license = "{text}"').files[0].license == text


@pytest.mark.parametrize(
    "text, problem",
    [("Apache2", "names no SPDX license (Apache2)"), ("(MIT", "is not a license expression")],
)
def test_a_license_that_is_not_spdx_is_refused_at_its_line(tmp_path, text, problem):
    message = refused(tmp_path, file=f'license = "{text}"')
    assert message.startswith(f"{tmp_path / 'bundle.toml'}:10: license '{text}' of 'bin/hello' {problem}")
    assert "https://spdx.org/licenses/" in message


@pytest.mark.parametrize("path", [".bundle/sbom.spdx.json", ".bundle/mine", ".bundle"])
def test_no_file_may_write_where_the_sbom_goes(tmp_path, path):
    file = f'[[file]]\npath = "{path}"\nsource = {{ url = "hello" }}\n'
    message = refused(tmp_path, file=file)
    assert f"path '{path}' lies under '.bundle/', where bundler writes" in message


def test_the_sbom_group_is_refused_as_a_file_group(tmp_path):
    message = refused(tmp_path, file=f'group = "{rules.SBOM_GROUP}"')
    assert f"group '{rules.SBOM_GROUP}' is where bundler keeps the SBOM" in message


def test_the_device_accepts_the_sbom_paths_as_ordinary_entries():
    for path in rules.SBOM_PATHS.values():
        assert rules.path_problem(path) is None and rules.is_bundler_path(path)

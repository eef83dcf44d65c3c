from bundler.commands import _complete_arches
from bundler.manifest import load_manifest
from tests.helpers import ROOT


def test_lock_defaults_to_the_arches_every_file_has_and_names_the_others():
    said = []
    arches = _complete_arches(load_manifest(ROOT / "examples" / "kubesolo" / "bundle.toml"), said.append)
    assert arches == ["amd64", "arm64", "riscv64"]
    assert len(said) == 1 and said[0].startswith("skipping arm: no source for") and "crun" in said[0]

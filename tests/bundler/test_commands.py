from bundler.arch import host_arch
from bundler.commands import _complete_arches, _lock_arches
from bundler.manifest import load_manifest
from testing.helpers import ROOT


def test_lock_defaults_to_the_arches_every_file_has_and_names_the_others():
    said = []
    arches = _complete_arches(load_manifest(ROOT / "examples" / "kubesolo" / "bundle.toml"), said.append)
    assert arches == ["amd64", "arm64", "riscv64"]
    assert len(said) == 1 and said[0].startswith("skipping arm: no source for") and "crun" in said[0]


def test_lock_of_arch_neutral_sources_defaults_to_this_hosts_arch(tmp_path):
    manifest = tmp_path / "bundle.toml"
    manifest.write_text(
        '[bundle]\nname = "n"\nversion = "1"\nentrypoint = ["bin/a"]\n'
        '[[file]]\npath = "bin/a"\nmode = "0755"\nsource = { url = "a.sh" }\n'
        '[[image]]\nname = "base"\nref = "registry.example/base:1"\n'
    )
    assert _lock_arches(load_manifest(manifest)) == [host_arch()]
    # One file with per-arch sources: the arches every file has, as before.
    kubesolo = load_manifest(ROOT / "examples" / "kubesolo" / "bundle.toml")
    assert _lock_arches(kubesolo, lambda _: None) == ["amd64", "arm64", "riscv64"]


def test_inspect_of_a_program_that_is_no_bundle_says_so(stub_path):
    from testing.helpers import bundler

    plain = bundler("inspect", "/usr/bin/ls", check=False)
    assert plain.returncode == 3 and "/usr/bin/ls is not a bundle" in plain.stderr and "bare stub" not in plain.stderr
    bare = bundler("inspect", stub_path, check=False)  # a PyInstaller stub without a payload: that one is a bare stub
    assert bare.returncode == 3 and "it is a bare stub" in bare.stderr

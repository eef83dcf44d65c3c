"""`./app --bundle-sbom` (stub.main in-process on bundles `bundler make` built around a stand-in stub): the SBOM
the bundle carries, byte for byte the one written beside it, from a whole bundle and from a split one; nothing is
installed and the runtime is not started."""

import json

from testing.bundles import make_bundle
from tests.stub.test_main import run_stub


def test_bundle_sbom_prints_the_sbom_and_installs_nothing(tmp_path, plain_stub, monkeypatch, capsys):
    path, index = make_bundle(tmp_path / "build", plain_stub)
    root = tmp_path / "root"
    monkeypatch.setenv("BUNDLE_DIR", str(root))
    code, out, err = run_stub(monkeypatch, capsys, path, "--bundle-sbom")
    assert code == 0 and err == ""
    assert out == path.with_name(path.name + ".spdx.json").read_text()
    assert {p["name"] for p in json.loads(out)["packages"]} >= {"bin/hello", "share/data.txt"}
    assert not root.exists()


def test_bundle_sbom_reads_a_split_bundle_from_its_parts(tmp_path, plain_stub, monkeypatch, capsys):
    path, index = make_bundle(
        tmp_path / "build",
        plain_stub,
        files={"bin/hello": ("#!/bin/sh\n", "0755"), "share/big.bin": (bytes(range(256)) * 8192, "0644")},
        sbom_format="cyclonedx",
        split=1 << 20,
    )
    assert index.parts
    code, out, err = run_stub(monkeypatch, capsys, path, "--bundle-sbom")
    assert code == 0, err
    assert out == path.with_name(path.name + ".cdx.json").read_text()
    assert json.loads(out)["specVersion"] == "1.6"

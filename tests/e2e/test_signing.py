"""Signed bundles end to end: `bundler keygen`, `make --sign/--require-key`, `bundler verify --key`, and the real
frozen stub's `--bundle-verify --bundle-key`, `--bundle-key` on install and the keys it pins (docs/signing.md)."""

import json
import os
import re
import shutil
import subprocess

import pytest

from testing.faults import SMALL, build, expected_files, install_problems, start, version_dirs, write_project
from testing.helpers import ROOT, bundler, run
from testing.mutations import join_section, read_section, section_span, split_section, with_section


@pytest.fixture(scope="module")
def made(tmp_path_factory, cache_dir, stub_path):
    work = tmp_path_factory.mktemp("signing")
    keys = {}
    for name in ("release", "rogue"):
        printed = bundler("keygen", "--out", work / name).stdout.splitlines()
        keys[name] = {"key": work / (name + ".key"), "pub": work / (name + ".pub"), "fingerprint": printed[2][4:]}
    project = write_project(work / "project", SMALL)
    required = build(project, cache_dir, "--sign", keys["release"]["key"], "--require-key", keys["release"]["pub"])
    os.replace(required, work / "required")
    signed = build(project, cache_dir, "--sign", keys["release"]["key"])
    os.replace(signed, work / "signed")
    unsigned = build(write_project(work / "v2", SMALL, version="2.0.0"), cache_dir)
    return {
        "keys": keys,
        "required": work / "required",
        "signed": work / "signed",
        "unsigned": unsigned,
        "expected": expected_files(project, SMALL),
        "stub": stub_path,
        "work": work,
    }


def test_build_host_verify_checks_the_signature_against_the_given_key(made):
    keys = made["keys"]
    ok = bundler("verify", made["required"], "--key", keys["release"]["pub"])
    assert "signature: ok, signed by the trusted key {}".format(keys["release"]["fingerprint"]) in ok.stdout
    wrong = bundler("verify", made["required"], "--key", keys["rogue"]["pub"], check=False)
    assert wrong.returncode == 3 and keys["release"]["fingerprint"] in wrong.stderr
    unsigned = bundler("verify", made["unsigned"], "--key", keys["release"]["pub"], check=False)
    assert unsigned.returncode == 3 and "is not signed" in unsigned.stderr
    assert "signature: none" in bundler("verify", made["unsigned"]).stdout


def test_device_verify_and_info_show_and_check_the_key(made):
    keys = made["keys"]
    ok = run([made["signed"], "--bundle-verify", "--bundle-key", keys["release"]["pub"]])
    assert ok.returncode == 0 and "signature: ok" in ok.stdout, ok.stderr
    wrong = run([made["signed"], "--bundle-verify", "--bundle-key", keys["rogue"]["pub"]])
    assert wrong.returncode == 3 and "Traceback" not in wrong.stderr and len(wrong.stderr.splitlines()) == 1
    info = run([made["required"], "--bundle-info"]).stdout
    assert "signed:     yes, key {}".format(keys["release"]["fingerprint"]) in info
    assert "requires key {}".format(keys["release"]["fingerprint"]) in info
    doc = json.loads(run([made["required"], "--bundle-info", "--json"]).stdout)
    assert doc["signed"] is True and doc["require_key"].startswith("ed25519:")


def test_first_install_of_a_bundle_that_requires_its_key_pins_the_key(made, tmp_path):
    root = tmp_path / "root"
    result = start(made["required"], root)
    assert result.returncode == 0 and result.stdout.startswith("RAN 1.0.0"), result.stderr
    assert install_problems(root, made["expected"]) == []
    pins = list((root / ".trusted-keys").iterdir())
    # The pinned file is the key itself, byte for byte what keygen wrote (via cryptography).
    assert [p.read_text() for p in pins] == [made["keys"]["release"]["pub"].read_text()]
    # Later: an unsigned bundle of a newer version is refused on this device, and nothing of it is kept.
    refused = start(made["unsigned"], root)
    assert refused.returncode == 3 and "RAN" not in refused.stdout
    assert f"keys pinned in {root / '.trusted-keys'}" in refused.stderr
    assert len(version_dirs(root)) == 1 and install_problems(root, made["expected"]) == []


def test_operator_key_on_the_command_line_refuses_other_signers(made, tmp_path):
    keys = made["keys"]
    refused = start(made["signed"], tmp_path / "a", "--bundle-key", keys["rogue"]["pub"])
    assert refused.returncode == 3 and "RAN" not in refused.stdout and version_dirs(tmp_path / "a") == []
    unsigned = run([made["unsigned"], "--bundle-dir", tmp_path / "b", "--bundle-key", keys["release"]["pub"]])
    assert unsigned.returncode == 3 and "is not signed" in unsigned.stderr
    ok = run([made["signed"], "--bundle-dir", tmp_path / "c", "--bundle-key", keys["release"]["pub"], "x"])
    assert ok.returncode == 0 and ok.stdout.startswith("RAN"), ok.stderr


def _rewrite_index(made, source, output, change, keep_signature):
    """What an attacker without the private key can do: rewrite the content index (fixing the header's sha256); the
    stub is the same, so its stub_sha256 still holds."""
    _, index_bytes, signature, table_bytes, data = split_section(read_section(source))
    doc = json.loads(index_bytes)
    change(doc)
    new_index = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    section = join_section(new_index, signature if keep_signature else b"", table_bytes, data)
    return with_section(made["stub"], section, output)


def test_an_index_changed_after_signing_is_refused_even_when_no_key_is_asked_for(made, tmp_path):
    tampered = _rewrite_index(
        made, made["signed"], tmp_path / "tampered", lambda doc: doc.update(version="6.6.6"), keep_signature=True
    )
    result = start(tampered, tmp_path / "root")
    assert result.returncode == 3 and "does not hold" in result.stderr and "RAN" not in result.stdout
    assert version_dirs(tmp_path / "root") == []


def test_stripping_the_signature_and_the_requirement_is_stopped_by_the_device_not_the_file(made, tmp_path):
    stripped = _rewrite_index(
        made, made["required"], tmp_path / "stripped", lambda doc: doc.pop("require_key"), keep_signature=False
    )
    # The threat model of docs/signing.md: a file cannot vouch for itself. On a device with no anchor the
    # stripped bundle is just an unsigned bundle (its content is still verified against its own index).
    fresh = start(stripped, tmp_path / "fresh")
    assert fresh.returncode == 0 and fresh.stdout.startswith("RAN")
    # With an anchor it is refused: the operator's key, or the key pinned by an earlier signed install.
    anchored = start(stripped, tmp_path / "anchored", "--bundle-key", made["keys"]["release"]["pub"])
    assert anchored.returncode == 3 and "is not signed" in anchored.stderr
    pinned = tmp_path / "pinned"
    assert start(made["required"], pinned).returncode == 0
    refused = start(stripped, pinned)
    assert refused.returncode == 3 and "keys pinned in" in refused.stderr


def test_require_key_without_sign_is_a_usage_error(made, cache_dir):
    result = bundler(
        "make",
        "--cache-dir",
        cache_dir,
        "--require-key",
        made["keys"]["release"]["pub"],
        "--output",
        made["work"] / "never",
        cwd=made["work"] / "project",
        check=False,
    )
    assert result.returncode == 2 and "--require-key needs --sign" in result.stderr
    assert not (made["work"] / "never").exists()


def _recipe():
    """The shell block of docs/signing.md that checks a bundle with OpenSSL, as the page holds it."""
    text = (ROOT / "docs" / "signing.md").read_text()
    blocks = re.findall(r"```sh\n(python3 - ./app release.pub <<'EOF'\n.*?\nEOF\n)```", text, re.S)
    assert len(blocks) == 1
    return blocks[0]


def _run_recipe(folder, bundle, public_key):
    shutil.copy(bundle, folder / "app")
    os.chmod(folder / "app", 0o644)  # the recipe never runs the file it checks: it need not be executable
    shutil.copy(public_key, folder / "release.pub")
    return subprocess.run(["bash", "-c", _recipe()], cwd=folder, capture_output=True, text=True)


def test_the_recipe_of_docs_signing_md_checks_the_signature_and_the_stub_without_running_the_file(made, tmp_path):
    keys = made["keys"]
    (tmp_path / "good").mkdir()
    ok = _run_recipe(tmp_path / "good", made["required"], keys["release"]["pub"])
    assert ok.returncode == 0 and "Signature Verified Successfully" in ok.stdout, ok.stdout + ok.stderr
    assert "./app: every byte is the one signed by release.pub" in ok.stdout
    (tmp_path / "rogue").mkdir()
    rogue = _run_recipe(tmp_path / "rogue", made["required"], keys["rogue"]["pub"])
    assert rogue.returncode != 0 and "the signature over the content index does not hold" in rogue.stderr
    # The genuine signed payload grafted onto a stub built from other code: one byte of the bootloader changed.
    stub = bytearray(made["stub"].read_bytes())
    at = stub.index(b"PyInstaller")
    stub[at] ^= 0x20
    (tmp_path / "modified-stub").write_bytes(stub)
    graft = with_section(tmp_path / "modified-stub", read_section(made["required"]), tmp_path / "graft")
    assert read_section(graft) == read_section(made["required"])
    (tmp_path / "swapped").mkdir()
    swapped = _run_recipe(tmp_path / "swapped", graft, keys["release"]["pub"])
    assert "Signature Verified Successfully" in swapped.stdout  # the content index alone still checks out...
    assert swapped.returncode != 0, swapped.stdout  # ...but the stub does not
    assert (
        swapped.stderr.strip()
        == "./app: the stub (the bytes outside the payload section) is not the one that was signed"
    )
    verified = bundler("verify", graft, "--key", keys["release"]["pub"], check=False)
    assert verified.returncode == 3 and "its stub was replaced" in verified.stderr
    # A changed frame is named by the entry it decodes to: the data area's last byte, in a copy of the genuine file.
    damaged = bytearray(made["required"].read_bytes())
    offset, size = section_span(made["required"], "bundle")
    damaged[offset + size - 1] ^= 1
    (tmp_path / "damaged").write_bytes(damaged)
    (tmp_path / "damaged-run").mkdir()
    frame = _run_recipe(tmp_path / "damaged-run", tmp_path / "damaged", keys["release"]["pub"])
    assert frame.returncode != 0 and "is not the one that was signed" in frame.stderr, frame.stderr


def test_the_recipe_passes_a_split_bundle_made_without_the_key(made, tmp_path):
    folder = tmp_path / "stick"
    folder.mkdir()
    bundler("split", made["required"], "--size", "64K", "--output", folder / "app")
    assert len(list(folder.glob("app.part*"))) > 1
    shutil.copy(made["keys"]["release"]["pub"], folder / "release.pub")
    ok = subprocess.run(["bash", "-c", _recipe()], cwd=folder, capture_output=True, text=True)
    assert ok.returncode == 0 and "./app: every byte is the one signed by release.pub" in ok.stdout, ok.stderr

"""The provenance `bundler make` writes beside a bundle (around a stand-in stub): an in-toto v1 Statement with a
SLSA Provenance v1 predicate in a DSSE envelope, checked with securesystemslib's DSSE verifier against the
bundle's public key; its subject is the written file, its dependencies the manifest, the lock, every source (a
local file, a download served on loopback) and the stub, each with its sha256."""

import base64
import json
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from testing.faults import sha256_of
from testing.helpers import bundler
from testing.http_server import FileServer

MANIFEST = """[bundle]
name = "demo"
version = "1.0.0"
entrypoint = ["bin/hello"]

[[file]]
path = "bin/hello"
mode = "0755"
source = {{ url = "hello" }}

[[file]]
path = "share/data.bin"
source = {{ url = "{data}" }}
"""


@pytest.fixture
def made(tmp_path, plain_stub):
    """A locked, signed bundle, and its keys."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "data.bin").write_bytes(random.Random(9).randbytes(30_000))
    work = tmp_path / "work"
    work.mkdir()
    (work / "hello").write_text("#!/bin/sh\necho hello\n")
    bundler("keygen", "--out", work / "release")
    with FileServer(www) as server:
        url = server.url("data.bin")
        (work / "bundle.toml").write_text(MANIFEST.format(data=url))
        bundler("lock", "--cache-dir", work / "cache", cwd=work)
        out = work / "app"
        common = ("--stub", plain_stub, "--cache-dir", work / "cache", "--level", "3", "--locked")
        bundler("make", *common, "--sign", work / "release.key", "-o", out, cwd=work)
        bundler("make", *common, "-o", work / "unsigned", cwd=work)
    return {"work": work, "out": out, "www": www, "url": url, "stub": plain_stub}


def _key(pub_path, keyid):
    from securesystemslib.signer import SSlibKey

    public = serialization.load_pem_public_key(Path(pub_path).read_bytes())
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return SSlibKey(keyid, "ed25519", "ed25519", {"public": raw.hex()})


def _envelope(path):
    from securesystemslib.dsse import Envelope

    return Envelope.from_dict(json.loads(path.with_name(path.name + ".intoto.json").read_text()))


def test_the_envelope_verifies_against_the_bundles_public_key_and_not_once_changed(made):
    from securesystemslib.exceptions import VerificationError

    envelope = _envelope(made["out"])
    (keyid,) = envelope.signatures
    key = _key(made["work"] / "release.pub", keyid)
    assert list(envelope.verify([key], 1)) == [keyid]
    statement = json.loads(envelope.payload)
    statement["subject"][0]["digest"]["sha256"] = "0" * 64  # another file claimed
    envelope.payload = json.dumps(statement).encode()
    with pytest.raises(VerificationError):
        envelope.verify([key], 1)
    bundler("keygen", "--out", made["work"] / "other")
    with pytest.raises(VerificationError):
        _envelope(made["out"]).verify([_key(made["work"] / "other.pub", keyid)], 1)


def test_the_statement_names_the_bundle_and_every_input_by_sha256(made):
    work, out = made["work"], made["out"]
    statement = json.loads(_envelope(out).payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"] == [{"name": "app", "digest": {"sha256": sha256_of(out)}}]
    build = statement["predicate"]["buildDefinition"]
    assert build["buildType"] == "urn:bundler:make:v1"
    assert build["externalParameters"]["locked"] is True and build["externalParameters"]["level"] == 3
    deps = {d["name"]: d for d in build["resolvedDependencies"]}
    assert deps["manifest"]["digest"]["sha256"] == sha256_of(work / "bundle.toml")
    assert deps["lock"]["digest"]["sha256"] == sha256_of(work / "bundle.lock")
    assert deps["file:bin/hello"] == {
        "name": "file:bin/hello",
        "uri": (work / "hello").as_uri(),
        "digest": {"sha256": sha256_of(work / "hello")},
    }
    assert deps["file:share/data.bin"]["uri"] == made["url"]
    assert deps["file:share/data.bin"]["digest"]["sha256"] == sha256_of(made["www"] / "data.bin")
    assert deps["stub"]["digest"]["sha256"] == sha256_of(made["stub"])
    run = statement["predicate"]["runDetails"]
    assert run["builder"]["id"] and run["builder"]["version"]["bundler"]
    assert run["byproducts"] == [{"name": "app.spdx.json", "digest": {"sha256": sha256_of(work / "app.spdx.json")}}]


def test_an_unsigned_build_writes_the_envelope_without_a_signature(made):
    doc = json.loads((made["work"] / "unsigned.intoto.json").read_text())
    assert doc["signatures"] == [] and doc["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(doc["payload"]))
    assert statement["subject"][0]["digest"]["sha256"] == sha256_of(made["work"] / "unsigned")

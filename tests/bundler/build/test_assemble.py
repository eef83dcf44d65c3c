"""bundler/assemble: the executable and its checksum file appear whole, or nothing appears."""

import hashlib
import os

import pytest

from bundler.build.assemble import build_index, write_bundle
from bundler.build.compress import Member, compress
from bundler.cache import Cache
from payload.errors import BundleError
from payload.layout import open_payload

IDENTITY = {"name": "demo", "version": "1.0", "variant": "offline", "arch": "amd64", "entrypoint": ["hello"]}


@pytest.fixture
def groups(tmp_path):
    cache = Cache(tmp_path / "cache")
    data = b"hello\n" * 1000
    source = tmp_path / "hello"
    source.write_bytes(data)
    member = Member("hello", 0o755, "file", source, hashlib.sha256(data).hexdigest(), len(data))
    return [compress(cache, "main", [member], level=3, log=lambda _: None)]


def test_writes_the_executable_and_a_checksum_file_sha256sum_reads(plain_stub, groups, tmp_path):
    out = tmp_path / "dist" / "demo"
    index = build_index(IDENTITY, groups)
    digest = write_bundle(plain_stub, index, groups, out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
    assert (tmp_path / "dist" / "demo.sha256").read_text() == f"{digest}  demo\n"
    assert os.access(out, os.X_OK)
    with open(out, "rb") as f:
        assert open_payload(str(out), f).index.to_bytes() == index.to_bytes()
    assert sorted(os.listdir(tmp_path / "dist")) == ["demo", "demo.sha256"]


def test_an_output_that_cannot_be_replaced_leaves_nothing_behind(plain_stub, groups, tmp_path):
    out = tmp_path / "dist" / "demo"
    out.mkdir(parents=True)  # an existing directory: the rename fails at the very end
    with pytest.raises(IsADirectoryError):
        write_bundle(plain_stub, build_index(IDENTITY, groups), groups, out)
    assert os.listdir(tmp_path / "dist") == ["demo"]
    assert os.listdir(out) == []


def test_a_stub_that_is_no_elf_leaves_nothing_behind(groups, tmp_path):
    stub = tmp_path / "stub"
    stub.write_bytes(b"#!/bin/sh\n")
    (tmp_path / "dist").mkdir()
    with pytest.raises(BundleError):
        write_bundle(stub, build_index(IDENTITY, groups), groups, tmp_path / "dist" / "demo")
    assert os.listdir(tmp_path / "dist") == []

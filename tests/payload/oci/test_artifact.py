"""payload/oci/artifact.py on its own: the image index of a tag (one version, several architectures), picking an
entry, and reading blobs out of spans of a file."""

import json

import pytest

from payload.errors import UsageError
from payload.oci import artifact


def entry(arch, version="1.0.0", variant="offline", name="demo", digest="sha256:" + "a" * 64):
    notes = {artifact.NAME: name, artifact.VERSION: version, artifact.VARIANT: variant, artifact.ARCH: arch}
    return {
        "mediaType": artifact.OCI_MANIFEST,
        "digest": digest,
        "size": 1,
        "annotations": notes,
        "platform": artifact.platform_of_arch(arch),
    }


def arches_of(index_bytes):
    return [
        (m["annotations"][artifact.ARCH], m["annotations"][artifact.VERSION])
        for m in json.loads(index_bytes)["manifests"]
    ]


def test_an_index_keeps_other_architectures_of_the_same_version_and_drops_other_versions():
    existing = {"manifests": [entry("arm64"), entry("amd64", digest="sha256:" + "b" * 64), entry("arm", "0.9")]}
    merged, dropped = artifact.merge_index(existing, [entry("amd64")], "r/demo:1")
    assert arches_of(merged) == [("amd64", "1.0.0"), ("arm64", "1.0.0")]  # in the architecture table's order
    assert json.loads(merged)["manifests"][0]["digest"] == "sha256:" + "a" * 64
    assert dropped == ["demo 0.9 arm/offline"]
    assert json.loads(merged)["manifests"][1]["platform"] == {"os": "linux", "architecture": "arm64"}


def test_an_index_refuses_another_bundle_and_mixed_versions():
    with pytest.raises(UsageError, match="holds other, not a version of demo"):
        artifact.merge_index({"manifests": [entry("arm64", name="other")]}, [entry("amd64")], "r/demo:1")
    with pytest.raises(UsageError, match="one version of one bundle"):
        artifact.merge_index(None, [entry("amd64"), entry("arm64", "2.0")], "r/demo:1")
    with pytest.raises(UsageError, match="same architecture and variant"):
        artifact.merge_index(None, [entry("amd64"), entry("amd64")], "r/demo:1")


def test_select_entry_by_arch_and_variant():
    doc = {"manifests": [entry("amd64"), entry("amd64", variant="online"), entry("arm")]}
    assert artifact.select_entry(doc, "arm", None, "r")["annotations"][artifact.ARCH] == "arm"
    assert artifact.select_entry(doc, "amd64", "online", "r")["annotations"][artifact.VARIANT] == "online"
    with pytest.raises(UsageError, match="several bundles for amd64"):
        artifact.select_entry(doc, "amd64", None, "r")
    with pytest.raises(UsageError, match="no bundle for riscv64; it has: amd64/offline, amd64/online, arm/offline"):
        artifact.select_entry(doc, "riscv64", None, "r")


def test_span_reader_reads_spans_as_one_file_from_any_offset(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(bytes(range(100)))
    spans = ((0, 10), (50, 5), (90, 10))
    whole = bytes(range(10)) + bytes(range(50, 55)) + bytes(range(90, 100))
    for start in range(len(whole) + 1):
        with artifact.SpanReader(str(path), spans, start) as reader:
            got = b"".join(iter(lambda: reader.read(3), b""))
        assert got == whole[start:]

import hashlib
import json

import pytest

from payload.errors import IntegrityError
from payload.index import Entry, Group, Index


def _index(**changes):
    groups = [Group("files", 0, 100, 30, "a" * 64), Group("images", 100, 50, 5, "b" * 64)]
    entries = [Entry("bin/x", "file", 0o755, 10, "c" * 64, "files", 0),
               Entry("bin/y", "file", 0o644, 20, "d" * 64, "files", 10),
               Entry("blobs/z", "blob", 0o644, 5, "e" * 64, "images", 0)]
    index = Index("demo", "1.0.0", "offline", "amd64", "0.1.0", ["bin/x", "{root}"], groups, entries)
    doc = index.to_json()
    doc.update(changes)
    return json.dumps(doc).encode()


def test_round_trip_keeps_identity_and_id():
    data = _index()
    index = Index.from_bytes(data, 150)
    assert index.to_json() == json.loads(data)
    # The id is the sha256 of the canonical bytes, whatever order the keys came in.
    assert index.bundle_id == hashlib.sha256(index.to_bytes()).hexdigest()
    assert Index.from_bytes(index.to_bytes(), 150).bundle_id == index.bundle_id
    assert [e.path for e in index.entries_of("files")] == ["bin/x", "bin/y"]
    assert index.installed_size == 35 and index.payload_size == 150


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["entries"][0].update(path="../etc/passwd"), "'..'"),
    (lambda d: d["entries"][0].update(path="/etc/passwd"), "absolute"),
    (lambda d: d["entries"][0].update(path="bin//x"), "empty"),
    (lambda d: d["entries"][1].update(path="bin/x"), "twice"),
    (lambda d: d["entries"][1].update(path="bin/x/y"), "both a file and a directory"),
    (lambda d: d["entries"][1].update(offset=11), "starts at 11"),
    (lambda d: d["entries"][1].update(size=21), "holds 30 bytes"),
    (lambda d: d["entries"][0].update(group="nope"), "unknown group"),
    (lambda d: d["entries"][0].update(mode=0o4755), "bad mode"),
    (lambda d: d["entries"][0].update(sha256="zz"), "bad sha256"),
    (lambda d: d["entries"][0].update(size=-1), "bad size"),
    (lambda d: d["groups"][1].update(offset=90), "overlap"),
    (lambda d: d["groups"][1].update(csize=51), "past the payload"),
    (lambda d: d.update(format=99), "format 99"),
    (lambda d: d.update(entrypoint=[]), "entrypoint"),
    (lambda d: d.update(name=""), "name is missing"),
])
def test_index_that_lies_is_refused(mutate, message):
    doc = json.loads(_index())
    mutate(doc)
    with pytest.raises(IntegrityError, match=message):
        Index.from_bytes(json.dumps(doc).encode(), 150)


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"[]", b"{", b'{"format": 1}', b"null"])
def test_garbage_is_an_integrity_error(data):
    with pytest.raises(IntegrityError):
        Index.from_bytes(data, 150)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(name="demo\n"), "not a plain name"),
    (lambda d: d["groups"][0].update(sha256="a" * 64 + "\n"), "bad sha256"),
    (lambda d: d["entries"][0].update(sha256="c" * 64 + "\n"), "bad sha256"),
    (lambda d: d.update(images=[{"name": "pause\n", "ref": "pause:3.10", "digest": "sha256:" + "f" * 64,
                                 "embedded": False}]), "not a plain name"),
    (lambda d: d.update(images=[{"name": "pause", "ref": "pause:3.10", "digest": "sha256:" + "f" * 64 + "\n",
                                 "embedded": False}]), "bad digest"),
])
def test_a_trailing_newline_is_not_a_name_or_digest(mutate, message):
    doc = json.loads(_index())
    mutate(doc)
    with pytest.raises(IntegrityError, match=message):
        Index.from_bytes(json.dumps(doc).encode(), 150)


def test_an_embedded_image_whose_manifest_is_not_an_entry_is_refused():
    doc = json.loads(_index())
    doc["images"] = [{"name": "pause", "ref": "pause:3.10", "digest": "sha256:" + "f" * 64, "embedded": True,
                      "manifest": "sha256:" + "e" * 64}]
    # blobs/z holds those bytes, but not at the path an image blob has: the device would not find it.
    with pytest.raises(IntegrityError, match="manifest sha256:e+ is not an entry"):
        Index.from_bytes(json.dumps(doc).encode(), 150)
    doc["entries"][2]["path"] = "images/blobs/sha256/" + "e" * 64
    assert Index.from_bytes(json.dumps(doc).encode(), 150).images[0]["manifest"] == "sha256:" + "e" * 64

import hashlib
import json
import re

import pytest

from payload.errors import BundleError, IntegrityError
from payload.index import Entry, Frame, Group, Index


def _index(**changes):
    groups = [Group("files", [Frame(0, 100, 30, "a" * 64)]), Group("images", [Frame(100, 50, 5, "b" * 64)])]
    entries = [
        Entry("bin/x", "file", 0o755, 10, "c" * 64, "files", 0),
        Entry("bin/y", "file", 0o644, 20, "d" * 64, "files", 10),
        Entry("images/blobs/sha256/" + "e" * 64, "blob", 0o644, 5, "e" * 64, "images", 0),
    ]
    index = Index(
        "demo", "1.0.0", "offline", "amd64", "0.1.0", ["bin/x", "{root}"], groups, entries, stub_sha256="f" * 64
    )
    doc = dict(index.to_json(), groups=index.table_json()["groups"])  # both documents in one, for the tests to change
    doc.update(changes)
    return json.dumps(doc).encode()


def _parse(data, size=150):
    """Index.from_bytes of _index()'s one document: its groups and parts are the encoding table, the rest the content
    index."""
    doc = json.loads(data)
    table = {"format": doc.get("format"), "groups": doc.pop("groups", None)}
    if "parts" in doc:
        table["parts"] = doc.pop("parts")
    return Index.from_bytes(json.dumps(doc).encode(), json.dumps(table).encode(), size)


def test_round_trip_keeps_identity_and_id():
    data = _index()
    index = _parse(data)
    assert dict(index.to_json(), groups=index.table_json()["groups"]) == json.loads(data)
    # The id is the sha256 of the canonical content bytes, whatever order the keys came in.
    assert index.bundle_id == hashlib.sha256(index.to_bytes()).hexdigest()
    assert Index.from_bytes(index.to_bytes(), index.table_bytes(), 150).bundle_id == index.bundle_id
    assert [
        [e.path for e in i]
        for i in ([index.entries[n] for n in f["entries"]] for g in index.table_json()["groups"] for f in g["frames"])
    ] == [["bin/x", "bin/y"], ["images/blobs/sha256/" + "e" * 64]]
    assert [e.path for e in index.entries_of("files")] == ["bin/x", "bin/y"]
    assert index.installed_size == 35 and index.payload_size == 150


def test_min_glibc_is_optional_and_kept():
    assert "min_glibc" not in json.loads(_index())
    index = _parse(_index(min_glibc="2.31"))
    assert index.min_glibc == "2.31" and index.to_json()["min_glibc"] == "2.31"
    index = _parse(_index(min_glibc="2.34", min_glibc_file="bin/y"))
    assert index.min_glibc_file == "bin/y" and index.to_json()["min_glibc_file"] == "bin/y"
    assert index.with_parts([]).min_glibc_file == "bin/y"


def test_update_repository_is_optional_and_kept():
    assert "update_repository" not in json.loads(_index())
    index = _parse(_index(update_repository="r.example:5000/edge/demo:stable"))
    assert index.update_repository == "r.example:5000/edge/demo:stable"
    assert index.to_json()["update_repository"] == "r.example:5000/edge/demo:stable"
    assert index.with_parts([]).update_repository == index.update_repository


def test_pull_is_background_unless_the_index_says_before_start():
    index = _parse(_index())
    assert "pull" not in json.loads(_index()) and index.pull == "background"
    index = _parse(_index(pull="before-start"))
    assert index.pull == "before-start" and index.to_json()["pull"] == "before-start"
    assert index.with_parts([]).pull == "before-start"


def test_update_policy_is_optional_and_kept():
    assert "update_policy" not in json.loads(_index()) and _parse(_index()).update_policy == {}
    policy = {"health": ["bin/x", "--quick"], "health_delay": 0.5, "probation_starts": 5, "keep": 1}
    index = _parse(_index(update_policy=policy))
    assert index.update_policy == policy and index.to_json()["update_policy"] == policy
    assert index.with_parts([]).update_policy == policy


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["entries"][0].update(path="../etc/passwd"), "'..'"),
        (lambda d: d.update(update_policy={}), "update_policy is not a non-empty object"),
        (lambda d: d.update(update_policy={"keep": 2}), "keep is its default"),  # defaults are never written
        (lambda d: d.update(update_policy={"keep": 0}), "keep must be a whole number"),
        (lambda d: d.update(update_policy={"keep": True}), "keep must be a whole number"),
        (lambda d: d.update(update_policy={"health_timeout": 0}), "more than 0 seconds"),
        (lambda d: d.update(update_policy={"health_delay": -1}), "health_delay must be a number"),
        (lambda d: d.update(update_policy={"health": []}), "health must be a non-empty list"),
        (lambda d: d.update(update_policy={"health": ["/bin/true"]}), "a relative path"),
        (lambda d: d.update(update_policy={"health": ["bin/nope"]}), "'bin/nope' is not a file"),
        (lambda d: d.update(update_policy={"retries": 1}), "not an .update. setting"),
        (lambda d: d["entries"][0].update(path="/etc/passwd"), "absolute"),
        (lambda d: d["entries"][0].update(path="bin//x"), "empty"),
        (lambda d: d["entries"][1].update(path="bin/x"), "twice"),
        (lambda d: d["entries"][1].update(path="bin/x/y"), "both a file and a directory"),
        (lambda d: d["groups"][0]["frames"][0].update(entries=[0]), "holds 30 bytes, its entries 10"),
        (lambda d: d["entries"][1].update(size=21), "holds 30 bytes, its entries 31"),
        (lambda d: d["entries"][0].update(group="files"), "unknown field 'group'"),
        (lambda d: d["entries"][0].update(offset=0), "unknown field 'offset'"),
        (lambda d: d["groups"][0]["frames"][0].update(entries=[0, 1, 1]), "'bin/y' is in two frames"),
        (lambda d: d["groups"][0]["frames"][0].update(entries=[0, 7]), "entry 7 is not in the index"),
        (lambda d: d["groups"][0]["frames"][0].update(entries=[0, True]), "entry True is not in the index"),
        (lambda d: d["groups"][1]["frames"][0].update(entries=[], size=0), "is in no frame"),
        (lambda d: d["entries"][0].update(mode=0o4755), "bad mode"),
        (lambda d: d["entries"][0].update(mode=0o775), "bad mode 509"),
        (lambda d: d["entries"][0].update(mode=0o646), "bad mode 422"),
        (lambda d: d["entries"][0].update(sha256="zz"), "bad sha256"),
        (lambda d: d["entries"][0].update(size=-1), "bad size"),
        (lambda d: d["groups"][1]["frames"][0].update(offset=90), "overlap"),
        (lambda d: d["groups"][1]["frames"][0].update(csize=51), "past the payload"),
        (lambda d: d.update(format=99), "format 99"),
        (lambda d: d.update(entrypoint=[]), "entrypoint"),
        (lambda d: d.update(name=""), "name is missing"),
        (lambda d: d.update(min_glibc="2.31.1"), "min_glibc"),
        (lambda d: d.update(min_glibc=2.31), "min_glibc"),
        (lambda d: d.update(min_glibc="2.34", min_glibc_file="bin/z"), "min_glibc_file 'bin/z' is not a file"),
        (lambda d: d.update(min_glibc="2.34", min_glibc_file="images/blobs/sha256/" + "e" * 64), "min_glibc_file"),
        (lambda d: d.update(min_glibc_file="bin/y"), "min_glibc is missing"),
        (lambda d: d.update(update_repository="r.example/demo@sha256:" + "a" * 64), "update_repository"),
        (lambda d: d.update(update_repository="No Ref"), "update_repository"),
        (lambda d: d.update(update_repository=7), "update_repository"),
        (lambda d: d.update(pull="background"), "pull"),  # the default is never written
        (lambda d: d.update(pull="later"), "pull"),
    ],
)
def test_index_that_lies_is_refused(mutate, message):
    doc = json.loads(_index())
    mutate(doc)
    with pytest.raises(IntegrityError, match=message):
        _parse(json.dumps(doc).encode())


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"[]", b"{", b'{"format": 1}', b"null"])
def test_garbage_is_an_integrity_error(data):
    index = _parse(_index())
    with pytest.raises(IntegrityError):
        Index.from_bytes(data, index.table_bytes(), 150)
    with pytest.raises(IntegrityError):
        Index.from_bytes(index.to_bytes(), data, 150)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(name="demo\n"), "not a plain name"),
        (lambda d: d["groups"][0]["frames"][0].update(sha256="a" * 64 + "\n"), "bad sha256"),
        (lambda d: d["entries"][0].update(sha256="c" * 64 + "\n"), "bad sha256"),
        (
            lambda d: d.update(
                images=[
                    {
                        "name": "pause\n",
                        "ref": "pause:3.10",
                        "platform": "linux/amd64",
                        "digest": "sha256:" + "f" * 64,
                        "embedded": False,
                    }
                ]
            ),
            "not a plain name",
        ),
        (
            lambda d: d.update(
                images=[
                    {
                        "name": "pause",
                        "ref": "pause:3.10",
                        "platform": "linux/amd64",
                        "digest": "sha256:" + "f" * 64 + "\n",
                        "embedded": False,
                    }
                ]
            ),
            "bad digest",
        ),
    ],
)
def test_a_trailing_newline_is_not_a_name_or_digest(mutate, message):
    doc = json.loads(_index())
    mutate(doc)
    with pytest.raises(IntegrityError, match=message):
        _parse(json.dumps(doc).encode())


def test_an_embedded_image_whose_manifest_is_not_an_entry_is_refused():
    doc = json.loads(_index())
    doc["images"] = [
        {
            "name": "pause",
            "ref": "pause:3.10",
            "platform": "linux/amd64",
            "digest": "sha256:" + "f" * 64,
            "embedded": True,
            "manifest": "sha256:" + "d" * 64,
            "layers": "raw",
            "size": 5,
        }
    ]
    with pytest.raises(IntegrityError, match="manifest sha256:d+ is not an entry"):
        _parse(json.dumps(doc).encode())
    doc["images"][0]["manifest"] = "sha256:" + "e" * 64
    assert _parse(json.dumps(doc).encode()).images[0].manifest == "sha256:" + "e" * 64


_PULLED = {
    "name": "pause",
    "ref": "registry.k8s.io/pause:3.10",
    "platform": "linux/amd64",
    "digest": "sha256:" + "f" * 64,
    "embedded": False,
}
_EMBEDDED = dict(_PULLED, embedded=True, manifest="sha256:" + "e" * 64, layers="raw", size=5)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(colour="blue"), "the index has the unknown field 'colour'"),
        (lambda d: d.pop("images"), "the index has no 'images'"),
        (lambda d: d["groups"][0].update(level=19), "group 'files' has the unknown field 'level'"),
        (lambda d: d["entries"][0].update(uid=0), "entry 'bin/x' has the unknown field 'uid'"),
        (lambda d: d.update(arch="x86_64"), "arch 'x86_64' is not one of amd64, arm64, arm, riscv64"),
        (lambda d: d.update(version="1.0 beta"), "version '1.0 beta' is not a version"),
        (lambda d: d.update(variant="Offline"), "variant 'Offline' is not a plain name"),
        (lambda d: d["groups"][0].update(name="Files"), "group name missing or repeated"),
        (lambda d: d.update(entrypoint=["bin/x", "{rot}"]), "unknown placeholder {rot}"),
        (lambda d: d["entries"][0].update(path="bin/x\n"), "has a NUL, newline or backslash"),
        (lambda d: d["entries"][0].update(path="bin\\x"), "has a NUL, newline or backslash"),
        (lambda d: d["entries"][0].update(path=".bundle-index.json"), "a name the installer keeps for itself"),
        (lambda d: d["entries"][2].update(path="images/z"), "blob entry 'images/z' is not at images/blobs/sha256/e"),
        (lambda d: d.update(require_key="ed25519:short"), "require_key is not an ed25519 key"),
        (lambda d: d.update(images=[_PULLED, _PULLED]), "an image name appears twice"),
        (lambda d: d.update(images=[dict(_PULLED, manifest="sha256:" + "e" * 64)]), "unknown field 'manifest'"),
        (lambda d: d.update(images=[dict(_EMBEDDED, layers="gzip")]), "layers 'gzip' is neither raw nor exact"),
        (
            lambda d: d.update(images=[{k: v for k, v in _EMBEDDED.items() if k != "size"}]),
            "image 'pause' has no 'size'",
        ),
        (lambda d: d.update(images=[dict(_PULLED, platform="arm64")]), "platform 'arm64' is not os/arch"),
        (lambda d: d.update(images=[dict(_PULLED, ref="Registry/Pause")]), "ref 'Registry/Pause' is not an image"),
    ],
)
def test_an_index_that_breaks_a_rule_of_the_spec_is_refused(mutate, message):
    doc = json.loads(_index())
    mutate(doc)
    with pytest.raises(IntegrityError, match=re.escape(message)):
        _parse(json.dumps(doc).encode())


def test_image_records_round_trip_typed():
    doc = json.loads(_index())
    doc["images"] = [_EMBEDDED, dict(_PULLED, name="coredns")]
    index = _parse(json.dumps(doc).encode())
    embedded, pulled = index.images
    assert (embedded.embedded, embedded.layers, embedded.size, embedded.archive_name) == (True, "raw", 5, "pause.tar")
    assert (pulled.embedded, pulled.manifest, pulled.archive_name) == (False, None, "coredns.tar")
    assert index.to_json()["images"] == doc["images"]


def test_make_refuses_an_index_every_device_would_refuse(tmp_path):
    from bundler.build.assemble import check_as_device, write_bundle

    index = _parse(_index())
    check_as_device(index)  # a sound index passes
    index.entrypoint = ["bin/absent"]
    with pytest.raises(BundleError, match="every device would refuse the index") as caught:
        write_bundle(tmp_path / "stub", index, [], tmp_path / "out")
    assert caught.value.exit_code == 1 and list(tmp_path.iterdir()) == []


def test_an_image_stored_exactly_keeps_its_pinned_manifest():
    doc = json.loads(_index())
    doc["images"] = [dict(_EMBEDDED, layers="exact")]  # manifest e..., digest f...: not what was pinned
    with pytest.raises(IntegrityError, match="stored exactly, but its manifest sha256:e+ is not the pinned"):
        _parse(json.dumps(doc).encode())
    doc["images"][0]["digest"] = doc["images"][0]["manifest"]
    assert _parse(json.dumps(doc).encode()).images[0].layers == "exact"


# ---------------------------------------------------------------- groups of several frames


def _two_frames(first=(0, 60, 10, [0]), second=(60, 40, 20, [1])):
    """The files group of _index() cut into two frames: bin/x (10 bytes) in the first, bin/y (20) in the second."""
    doc = json.loads(_index())
    doc["groups"][0]["frames"] = [
        dict(zip(("offset", "csize", "size", "entries"), first), sha256="a" * 64),
        dict(zip(("offset", "csize", "size", "entries"), second), sha256="9" * 64),
    ]
    return doc


def test_a_group_of_several_frames_gives_each_its_place():
    index = _parse(json.dumps(_two_frames()).encode())
    files = index.group("files")
    assert (files.offset, files.csize, files.size) == (0, 100, 30)
    assert [(f.offset, f.csize, f.start, f.end, f.number) for f in files.frames] == [
        (0, 60, 0, 10, 1),
        (60, 40, 10, 30, 2),
    ]
    assert [(g.name, f.offset) for g, f in index.frames()] == [("files", 0), ("files", 60), ("images", 100)]
    assert [[e.path for e in entries] for _, entries in files.split_entries(index.entries_of("files"))] == [
        ["bin/x"],
        ["bin/y"],
    ]
    assert files.label(files.frames[1]) == "group 'files' frame 2 of 2"
    assert index.group("images").label(index.group("images").frames[0]) == "group 'images'"
    again = Index.from_bytes(index.to_bytes(), index.table_bytes(), 150)
    assert (again.to_json(), again.table_json()) == (index.to_json(), index.table_json())


@pytest.mark.parametrize(
    "doc, message",
    [
        (_two_frames((0, 60, 15, [0]), (60, 40, 15, [1])), "group 'files' frame 1 holds 15 bytes, its entries 10"),
        (_two_frames((0, 60, 10, [0]), (61, 39, 20, [1])), "group 'files' frame 2 does not start where frame 1 ends"),
        (
            _two_frames((0, 60, 30, [0, 1]), (60, 40, 0, [])),
            "group 'files' frame 2 is empty; only a group's one frame may be",
        ),
        (
            _two_frames((0, 60, 10, [0]), (60, 91, 20, [1])),
            "group 'files' frame 2 ends at 151, past the payload's 150 bytes",
        ),
    ],
)
def test_frames_that_break_a_rule_are_refused(doc, message):
    with pytest.raises(IntegrityError, match=re.escape(message)):
        _parse(json.dumps(doc).encode())


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["groups"][0].update(frames=[]), "group 'files': frames is not a non-empty list"),
        (lambda d: d["groups"][0].update(frames={}), "group 'files': frames is not a non-empty list"),
        (
            lambda d: d["groups"][0]["frames"][0].update(zstd="1.5"),
            "group 'files' frame 1 has the unknown field 'zstd'",
        ),
        (lambda d: d["groups"][0]["frames"][0].update(level=0), "group 'files' frame 1: level is not a zstd level"),
        (lambda d: d["groups"][0]["frames"][0].update(level="3"), "group 'files' frame 1: level is not a zstd level"),
        (lambda d: d["groups"][0]["frames"][0].update(level=True), "group 'files' frame 1: level is not a zstd level"),
        (lambda d: d["groups"][0]["frames"][0].pop("sha256"), "group 'files' frame 1 has no 'sha256'"),
        (lambda d: d["groups"][0].update(sha256="a" * 64), "group 'files' has the unknown field 'sha256'"),
    ],
)
def test_a_group_without_sound_frames_is_refused(mutate, message):
    doc = json.loads(_index())
    mutate(doc)
    with pytest.raises(IntegrityError, match=re.escape(message)):
        _parse(json.dumps(doc).encode())


def test_a_frame_a_device_encoded_again_keeps_its_level_in_the_table_only():
    # A delta update (payload/delta.py) records the level it encoded a frame at; the content index is untouched.
    doc = json.loads(_index())
    doc["groups"][0]["frames"][0]["level"] = 3
    index = _parse(json.dumps(doc).encode())
    assert [f.level for _, f in index.frames()] == [3, None]
    assert json.loads(index.table_bytes())["groups"][0]["frames"][0]["level"] == 3
    assert "level" not in json.loads(index.table_bytes())["groups"][1]["frames"][0]
    assert index.to_bytes() == _parse(_index()).to_bytes()


def test_a_frame_larger_than_zstd_ever_writes_for_its_signed_size_is_refused():
    # The table is not signed: a frame's compressed size is bounded by the signed sizes of the entries it holds.
    doc = json.loads(_index())
    doc["groups"][1]["frames"][0]["csize"] = 5 + 4096 + 1  # the images frame holds 5 signed bytes
    with pytest.raises(IntegrityError, match="takes 4102 bytes for 5, more than zstd ever writes"):
        _parse(json.dumps(doc).encode(), size=100 + 4102)
    doc["groups"][1]["frames"][0]["csize"] = 5 + 4096
    assert _parse(json.dumps(doc).encode(), size=100 + 4101).payload_size == 100 + 4101

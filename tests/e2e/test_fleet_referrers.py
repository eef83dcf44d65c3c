"""The SBOM and provenance of a pushed bundle, as OCI referrers of its manifest, against Debian's docker-registry
on loopback (no referrers API: the `sha256-<hex>` tag fallback). What the registry holds is read with plain HTTP
(urllib), not with our client: the referrers tag's image index, each referrer's manifest (`subject`,
`artifactType`, the empty config) and its blob, byte for byte the file beside the bundle. Then `bundler pull
--sbom`, a bundle pushed without an SBOM, and an SBOM blob changed in the registry's own storage. Last,
`bundler diff` of two registry references: the diff of the files, with no group's blob fetched."""

import hashlib
import json
import os
import urllib.error
import urllib.request

import pytest

from testing.bundles import make_bundle, two_releases
from testing.helpers import bundler
from testing.registry import Registry
from tests.conftest import require_registry_tools

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SPDX = "application/spdx+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"


@pytest.fixture
def registry(tmp_path):
    require_registry_tools()
    with Registry(tmp_path / "storage") as running:
        yield running


def get(registry, path, accept=None):
    """(status, bytes) of GET `path` on the registry, with plain urllib."""
    request = urllib.request.Request(registry.url + path, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def sha256_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def bundle_manifest_digest(registry, repo, tag):
    status, data = get(registry, f"/v2/{repo}/manifests/{tag}", INDEX)
    assert status == 200, data
    (entry,) = json.loads(data)["manifests"]
    return entry["digest"]


def referrers_index(registry, repo, digest):
    """The referrers tag's image index, read as any OCI client reads a tag."""
    status, data = get(registry, f"/v2/{repo}/manifests/{digest.replace(':', '-')}", INDEX)
    assert status == 200, data
    return json.loads(data)


def test_push_attaches_the_sbom_and_provenance_and_pull_sbom_fetches_them(tmp_path, plain_stub, registry):
    bundle, index = make_bundle(tmp_path / "b", plain_stub)
    sides = {DSSE: bundle.with_name(bundle.name + ".intoto.json"), SPDX: bundle.with_name(bundle.name + ".spdx.json")}
    pushed = bundler("push", bundle, f"{registry.host}/fleet/demo:1.0.0")
    assert "attached demo-1.0.0.spdx.json, demo-1.0.0.intoto.json" in pushed.stderr, pushed.stderr
    subject = bundle_manifest_digest(registry, "fleet/demo", "1.0.0")

    # Debian's docker-registry has no referrers API: the fallback tag is what holds them.
    assert get(registry, f"/v2/fleet/demo/referrers/{subject}", INDEX)[0] == 404
    listed = referrers_index(registry, "fleet/demo", subject)
    assert listed["mediaType"] == INDEX
    assert sorted(e["artifactType"] for e in listed["manifests"]) == sorted(sides)
    for entry in listed["manifests"]:
        status, data = get(registry, f"/v2/fleet/demo/manifests/{entry['digest']}", MANIFEST)
        assert status == 200 and sha256_of(data) == entry["digest"] and len(data) == entry["size"]
        doc = json.loads(data)
        assert doc["mediaType"] == MANIFEST and doc["artifactType"] == entry["artifactType"]
        assert doc["subject"]["digest"] == subject and doc["subject"]["mediaType"] == MANIFEST
        assert doc["config"] == {"mediaType": EMPTY, "digest": sha256_of(b"{}"), "size": 2}
        assert doc["annotations"]["vnd.bundler.bundle-id"] == index.bundle_id
        (layer,) = doc["layers"]
        assert layer["mediaType"] == entry["artifactType"]
        status, blob = get(registry, f"/v2/fleet/demo/blobs/{layer['digest']}")
        assert status == 200 and blob == sides[entry["artifactType"]].read_bytes()

    # Pushed again (the same bundle): listed once each, not twice.
    bundler("push", bundle, f"{registry.host}/fleet/demo:1.0.0")
    assert referrers_index(registry, "fleet/demo", subject) == listed

    out = tmp_path / "pulled" / "app"
    said = bundler("pull", f"{registry.host}/fleet/demo:1.0.0", "--output", out, "--sbom")
    assert sorted(os.listdir(out.parent)) == ["app", "app.intoto.json", "app.sha256", "app.spdx.json"], said.stdout
    for kind, path in sides.items():
        assert out.with_name("app" + path.name[len(bundle.name) :]).read_bytes() == path.read_bytes(), kind
    assert bundler("inspect", "--sbom", out).stdout.encode() == out.with_name("app.spdx.json").read_bytes()


def test_a_bundle_pushed_without_an_sbom_says_so_in_one_line(tmp_path, plain_stub, registry):
    bundle, _ = make_bundle(tmp_path / "b", plain_stub)
    for suffix in (".spdx.json", ".intoto.json"):
        bundle.with_name(bundle.name + suffix).unlink()
    pushed = bundler("push", bundle, f"{registry.host}/fleet/bare:1")
    assert "no SBOM beside it" in pushed.stderr, pushed.stderr
    subject = bundle_manifest_digest(registry, "fleet/bare", "1")
    assert get(registry, f"/v2/fleet/bare/manifests/{subject.replace(':', '-')}", INDEX)[0] == 404

    out = tmp_path / "pulled" / "app"
    refused = bundler("pull", f"{registry.host}/fleet/bare:1", "--output", out, "--sbom", check=False)
    assert refused.returncode == 5 and "was pushed without its SBOM" in refused.stderr, refused.stderr
    assert len(refused.stderr.splitlines()) == 1 and not out.parent.exists()
    bundler("pull", f"{registry.host}/fleet/bare:1", "--output", out)  # without --sbom: the bundle alone
    assert sorted(os.listdir(out.parent)) == ["app", "app.sha256"]


def put(registry, path, data, media_type):
    request = urllib.request.Request(registry.url + path, data=data, method="PUT", headers={"Content-Type": media_type})
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 201


def test_an_sbom_changed_in_the_registry_or_beside_the_bundle_is_refused(tmp_path, plain_stub, registry):
    bundle, _ = make_bundle(tmp_path / "b", plain_stub)
    sbom = bundle.with_name(bundle.name + ".spdx.json")
    good = sbom.read_bytes()
    sbom.write_bytes(good.replace(b'"demo"', b'"demX"', 1))  # beside the bundle: push refuses before sending
    refused = bundler("push", bundle, f"{registry.host}/fleet/demo:1", check=False)
    assert refused.returncode == 3 and "does not belong to" in refused.stderr, refused.stderr
    assert not [r for r in registry.served() if r["method"] in ("POST", "PUT", "PATCH")]

    sbom.write_bytes(good)
    bundler("push", bundle, f"{registry.host}/fleet/demo:1")
    stored = registry.blob_data_path(sha256_of(good))
    assert stored.read_bytes() == good
    stored.write_bytes(good.replace(b'"demo"', b'"dem0"', 1))  # in the registry's own storage: same size
    out = tmp_path / "pulled" / "app"
    tampered = bundler("pull", f"{registry.host}/fleet/demo:1", "--output", out, "--sbom", check=False)
    assert tampered.returncode == 3 and sha256_of(good) in tampered.stderr, tampered.stderr
    assert len(tampered.stderr.splitlines()) == 1 and not out.parent.exists()


def test_the_sbom_of_another_bundle_attached_to_this_one_is_refused(tmp_path, plain_stub, registry):
    """Every blob and manifest verifies, but the SBOM attached is another version's: the signed index says no."""
    this, _ = make_bundle(tmp_path / "a", plain_stub, version="1.0.0")
    other, _ = make_bundle(tmp_path / "b", plain_stub, version="2.0.0")
    bundler("push", this, f"{registry.host}/fleet/demo:1")
    bundler("push", other, f"{registry.host}/fleet/demo:2")
    subject, theirs = (bundle_manifest_digest(registry, "fleet/demo", tag) for tag in ("1", "2"))
    (entry,) = [e for e in referrers_index(registry, "fleet/demo", theirs)["manifests"] if e["artifactType"] == SPDX]
    # 2.0.0's SBOM referrer, pointed at 1.0.0's manifest, and listed alone in 1.0.0's referrers tag.
    swapped = json.loads(get(registry, f"/v2/fleet/demo/manifests/{entry['digest']}", MANIFEST)[1])
    swapped["subject"]["digest"] = subject
    swapped["subject"]["size"] = len(get(registry, f"/v2/fleet/demo/manifests/{subject}", MANIFEST)[1])
    data = json.dumps(swapped).encode()
    put(registry, f"/v2/fleet/demo/manifests/{sha256_of(data)}", data, MANIFEST)
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [dict(entry, digest=sha256_of(data), size=len(data))]}
    put(registry, f"/v2/fleet/demo/manifests/{subject.replace(':', '-')}", json.dumps(index).encode(), INDEX)

    out = tmp_path / "pulled" / "app"
    refused = bundler("pull", f"{registry.host}/fleet/demo:1", "--output", out, "--sbom", check=False)
    assert refused.returncode == 3 and "not this bundle's SBOM" in refused.stderr, refused.stderr
    assert not out.parent.exists()


def _without_paths(doc):
    return {k: v for k, v in doc.items() if k not in ("old", "new")}, [
        {k: v for k, v in doc[side].items() if k != "path"} for side in ("old", "new")
    ]


def test_diff_of_registry_references_is_the_diff_of_the_files_without_fetching_a_group(tmp_path, plain_stub):
    require_registry_tools()
    old, new = two_releases(tmp_path, plain_stub)  # the releases of tests/bundler/fleet/test_diff.py
    by_files = json.loads(bundler("diff", old, new, "--json").stdout)
    with Registry(tmp_path / "storage") as registry:
        for path, tag in ((old, "1.0.0"), (new, "1.1.0")):
            bundler("push", path, f"{registry.host}/fleet/demo:{tag}")
        mark = len(registry.served())
        refs = [f"{registry.host}/fleet/demo:{tag}" for tag in ("1.0.0", "1.1.0")]
        by_refs = json.loads(bundler("diff", *refs, "--json").stdout)
        served = registry.served(mark)
        mixed = json.loads(bundler("diff", old, refs[1], "--json").stdout)  # a file against a reference
        # Pushed without its SBOM: the packages are unknown, the rest the same.
        for suffix in (".spdx.json", ".intoto.json"):
            new.with_name(new.name + suffix).unlink()
        bundler("push", new, f"{registry.host}/fleet/bare:1.1.0")
        bare = json.loads(bundler("diff", refs[0], f"{registry.host}/fleet/bare:1.1.0", "--json").stdout)
        text = bundler("diff", *refs).stdout
    # Pushed without --delta-from: none published, so an update fetches whole; of two files diff does not know.
    whole = by_refs["update"]["fetched_whole"]
    assert by_refs["update"].pop("with_delta") == mixed["update"].pop("with_delta") == {"fetched": whole, "patches": []}
    assert by_files["update"].pop("with_delta") is None
    assert _without_paths(by_refs) == _without_paths(by_files) == _without_paths(mixed)
    assert by_refs["new"]["path"].startswith(f"{registry.host}/fleet/demo:1.1.0@sha256:")
    assert by_refs["packages"]["changed"] == [{"name": "debian/tool", "type": "deb", "old": "1.0-1", "new": "1.1-1"}]
    assert bare["packages"] is None and bare["files"] == by_files["files"]
    assert "packages: ~ debian/tool 1.0-1 -> 1.1-1" in text
    # What it fetched, by the registry's access log: no frame of any group, only heads and attached SBOMs.
    frames = set()
    for path in (old, new):
        index = json.loads(bundler("inspect", "--json", path).stdout)
        frames |= {"sha256:" + f["sha256"] for g in index["encoding"]["groups"] for f in g["frames"]}
    blobs = [r["uri"].rsplit("/", 1)[1] for r in served if r["method"] == "GET" and "/blobs/" in r["uri"]]
    assert blobs and not frames & set(blobs), blobs
    assert len(blobs) == 4  # per side: its config (the signed index) and its SBOM


def test_diff_says_what_an_update_with_the_published_delta_fetches_and_files_with_delta_say_the_same(
    tmp_path, plain_stub
):
    """NEW pushed with --delta-from OLD: diff of the references reads the delta manifest beside NEW and puts each
    patch in place of its frame; the patches' sizes are the delta manifest's layers, read here with plain HTTP; diff
    of the two files with --delta makes the same patches itself (no registry) and says the same."""
    require_registry_tools()
    old, new = two_releases(tmp_path, plain_stub)
    files = json.loads(bundler("diff", old, new, "--delta", "--json").stdout)
    with Registry(tmp_path / "storage") as registry:
        bundler("push", old, f"{registry.host}/fleet/demo:1.0.0")
        bundler("push", new, f"{registry.host}/fleet/demo:1.1.0", "--delta-from", old)
        refs = [f"{registry.host}/fleet/demo:{tag}" for tag in ("1.0.0", "1.1.0")]
        doc = json.loads(bundler("diff", *refs, "--json").stdout)
        text = bundler("diff", *refs).stdout
        subject = bundle_manifest_digest(registry, "fleet/demo", "1.1.0")
        listed = referrers_index(registry, "fleet/demo", subject)
        (entry,) = [m for m in listed["manifests"] if m.get("artifactType") == "application/vnd.bundler.delta.v1"]
        status, data = get(registry, f"/v2/fleet/demo/manifests/{entry['digest']}", entry["mediaType"])
        assert status == 200, data
        delta = json.loads(data)
    published = sorted(layer["size"] for layer in delta["layers"])
    with_delta = doc["update"]["with_delta"]
    assert sorted(p["patch_size"] for p in with_delta["patches"]) == published and published
    frames = {}
    for label, path in (("old", old), ("new", new)):
        index = json.loads(bundler("inspect", "--json", path).stdout)
        frames[label] = {f["sha256"]: (g["name"], f["csize"]) for g in index["encoding"]["groups"] for f in g["frames"]}
    patched = {p["group"] for p in with_delta["patches"]}
    replaced = sum(c for sha, (g, c) in frames["new"].items() if sha not in frames["old"] and g in patched)
    assert with_delta["fetched"] == doc["update"]["fetched_whole"] - replaced + sum(published)
    assert "bundle-sbom" not in patched  # fetched whole: new in every release
    assert files["update"]["with_delta"] == with_delta
    assert "update:   with a delta: fetches " in text


def test_diff_of_a_path_that_is_neither_a_file_nor_a_reference_is_exit_2(tmp_path, plain_stub):
    old, _ = two_releases(tmp_path, plain_stub)
    missing = bundler("diff", old, tmp_path / "no-such" / "bundle", check=False)
    assert missing.returncode == 2 and "no such bundle file, nor a registry reference" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1

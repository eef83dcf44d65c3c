"""`./app --bundle-update REF` with the real frozen stub against Debian's docker-registry on loopback. What the
registry served is read from its own access log (`http.response.written`), and files are compared with hashlib,
not with our code."""

import hashlib
import json
import os
import shutil
import subprocess

import pytest

from payload.rules import SBOM_GROUP
from testing.faults import ENTRY, SMALL, build, ran, sha256_of, start, write_project
from testing.helpers import bundler
from testing.registry import FaultProxy, Registry
from tests.conftest import require_registry_tools

# 1.0.1 changes only the launcher group: its script gets a block of comment lines (a few KB once compressed, so
# that a transfer can be cut half way through it).
FILLER = "".join("# {}\n".format(hashlib.sha256(b"%d" % n).hexdigest()) for n in range(120))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    require_registry_tools()
    with Registry(tmp_path_factory.mktemp("storage")) as running:
        yield running


@pytest.fixture(scope="module")
def built(tmp_path_factory, cache_dir, stub_path, registry):
    """1.0.0 and 1.0.1 signed by the release key, a 1.0.1 signed by another key and an unsigned one; all name the
    registry's `edge/fleet:stable` as their [update] repository. Pushed as :1.0.0, :1.0.1 (and :stable), :evil,
    :unsigned."""
    keys = tmp_path_factory.mktemp("keys")
    for name in ("release", "foreign"):
        bundler("keygen", "--out", keys / name)
    found = {"keys": keys}
    for label, version, entry, key in (
        ("old", "1.0.0", ENTRY, "release"),
        ("new", "1.0.1", ENTRY + FILLER, "release"),
        ("foreign", "1.0.1", ENTRY + FILLER, "foreign"),
        ("unsigned", "1.0.1", ENTRY + FILLER, None),
    ):
        project = write_project(tmp_path_factory.mktemp(label), SMALL, version=version, name="fleet", entry=entry)
        with open(project / "bundle.toml", "a") as manifest:
            manifest.write(f'\n[update]\nrepository = "{registry.host}/edge/fleet:stable"\n')
        signing = ("--sign", keys / (key + ".key")) if key else ()
        found[label] = build(project, cache_dir, "--stub", stub_path, *signing)
    for label, tag in (
        ("old", "1.0.0"),
        ("new", "1.0.1"),
        ("new", "stable"),
        ("foreign", "evil"),
        ("unsigned", "unsigned"),
    ):
        bundler("push", found[label], f"{registry.host}/edge/fleet:{tag}")
    return found


def device(tmp_path, built):
    """A device on 1.0.0 that pinned the release key at its first start."""
    app = tmp_path / "dev" / "app"
    app.parent.mkdir()
    shutil.copy(built["old"], app)
    root = tmp_path / "root"
    assert ran(start(app, root, "--bundle-key", built["keys"] / "release.pub")) == "1.0.0"
    return app, root


def frames_of(bundle):
    """{frame sha256: stored size} from `bundler inspect --json` (the index as written), but the SBOM's: it is new
    in every release (a few KB) and fetched whole with the group that changed."""
    import json

    index = json.loads(bundler("inspect", bundle, "--json").stdout)
    return {
        f["sha256"]: f["csize"] for g in index["encoding"]["groups"] if g["name"] != SBOM_GROUP for f in g["frames"]
    }


def test_update_fetches_only_what_changed_then_rollback_runs_the_old_version(tmp_path, built, registry):
    app, root = device(tmp_path, built)
    old_frames, new_frames = frames_of(built["old"]), frames_of(built["new"])
    unchanged = sum(size for sha, size in new_frames.items() if sha in old_frames)
    changed = sum(size for sha, size in new_frames.items() if sha not in old_frames)
    assert changed and unchanged > 50 * changed  # the test's premise: one small group changed
    assert f"updates:    {registry.host}/edge/fleet:stable" in start(app, root, "--bundle-info").stdout
    mark = len(registry.served())
    result = start(app, root, "--bundle-update")  # REF from the bundle's own [update] repository
    assert result.returncode == 0, result.stderr
    assert "updated fleet 1.0.0 -> 1.0.1" in result.stdout and "RAN" not in result.stdout
    served = registry.blob_bytes_served(mark)
    assert 0 < served < unchanged / 10, (served, unchanged)
    # `bundler diff` says beforehand what the update fetches whole, to the byte.
    assert served == json.loads(bundler("diff", built["old"], built["new"], "--json").stdout)["update"]["fetched_whole"]
    assert sha256_of(app) == sha256_of(built["new"])  # byte for byte the file that was pushed
    assert not [p for p in app.parent.iterdir() if p.name != "app"]  # no temp left beside it
    assert not list((root / ".updates").glob("*/*"))  # the download dir is cleaned up
    assert ran(start(app, root)) == "1.0.1"
    rolled = start(app, root, "--bundle-rollback")
    assert rolled.returncode == 0 and "bundle file again" in rolled.stdout, rolled.stderr
    assert sha256_of(app) == sha256_of(built["old"])
    assert ran(start(app, root)) == "1.0.0"
    # And forward again, with nothing fetched: both versions are installed, and the file of `previous` kept.
    assert start(app, root, "--bundle-rollback").returncode == 0
    assert ran(start(app, root)) == "1.0.1"
    again = start(app, root, "--bundle-update", f"{registry.host}/edge/fleet:1.0.1")
    assert again.returncode == 0 and "nothing fetched" in again.stdout, again.stderr


def test_an_update_signed_by_another_key_is_refused_before_any_group_is_fetched(tmp_path, built, registry):
    app, root = device(tmp_path, built)
    before = sha256_of(app)
    mark = len(registry.served())
    refused = start(app, root, "--bundle-update", f"{registry.host}/edge/fleet:evil")
    assert refused.returncode == 3, refused.stderr
    assert "signed by key" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    blob_gets = [r["uri"] for r in registry.served(mark) if r["method"] == "GET" and "/blobs/" in r["uri"]]
    assert len(blob_gets) == 1, blob_gets  # the config (the signed index) only; no group was asked for:
    for sha in frames_of(built["foreign"]):
        assert not any(sha in uri for uri in blob_gets)
    assert sha256_of(app) == before and ran(start(app, root)) == "1.0.0"


def test_an_interrupted_update_resumes(tmp_path, built, registry):
    """The registry goes away half way through the changed group's blob: a proxy in front of it sends the
    response headers and 512 body bytes, then closes the connection, on the 4 attempts the client makes (as a
    registry killed mid-transfer does; killing the real process cannot be timed to one response). The next
    --bundle-update resumes that blob with Range and completes."""
    app, root = device(tmp_path, built)
    before = sha256_of(app)
    old_frames = frames_of(built["old"])
    changed = [sha for sha in frames_of(built["new"]) if sha not in old_frames]
    assert len(changed) == 1
    digest = "sha256:" + changed[0]
    with FaultProxy(registry.port) as proxy:
        proxy.cut_blob(digest, after=512, times=4)
        target = f"{proxy.host}/edge/fleet:1.0.1"
        cut = start(app, root, "--bundle-update", target)
        assert cut.returncode == 5 and "run again to resume" in cut.stderr, cut.stderr
        assert len(cut.stderr.strip().splitlines()) == 1
        # Nothing half-written: the old file, no temp beside it, 1.0.0 still current and running.
        assert sha256_of(app) == before and [p.name for p in app.parent.iterdir()] == ["app"]
        partial = list((root / ".updates").glob("*/" + changed[0] + ".partial"))
        assert len(partial) == 1 and partial[0].stat().st_size == 4 * 512
        assert ran(start(app, root)) == "1.0.0"
        mark = len(registry.served())
        done = start(app, root, "--bundle-update", target)
        assert done.returncode == 0, done.stderr
        assert proxy.blob_requests(digest)[-1].get("Range") == "bytes=2048-"
    resumed = [r for r in registry.served(mark) if r["uri"].endswith(digest)]
    assert resumed and resumed[-1]["status"] == "206"
    assert sha256_of(app) == sha256_of(built["new"]) and ran(start(app, root)) == "1.0.1"


def test_an_update_pointed_at_a_container_image_is_a_usage_error(tmp_path, built, registry, image_layout):
    """A container image, single-platform and as a multi-platform index, where a bundle was meant."""
    from testing.registry import push

    push(image_layout, "base", registry, "test/busybox:1")
    push(image_layout, "multi", registry, "test/multi:1", all_platforms=True)
    app, root = device(tmp_path, built)
    before = sha256_of(app)
    for ref in (f"{registry.host}/test/busybox:1", f"{registry.host}/test/multi:1"):
        refused = start(app, root, "--bundle-update", ref)
        assert refused.returncode == 2, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
        assert "is not a bundle" in refused.stderr and "bundler push" in refused.stderr, refused.stderr
    assert sha256_of(app) == before and ran(start(app, root)) == "1.0.0"


def test_without_a_reference_or_a_repository_the_update_says_what_to_do(tmp_path, plain_stub):
    """A bundle made without [update] and started with a bare --bundle-update (the run side in a subprocess of
    this Python, as tests/stub do: plain_stub cannot run)."""
    import sys

    from testing.bundles import make_bundle
    from testing.helpers import ROOT

    bundle, _ = make_bundle(tmp_path, plain_stub)
    env = dict(os.environ, BUNDLE_EXECUTABLE=str(bundle), BUNDLE_DIR=str(tmp_path / "root"), PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "stub", "--bundle-update"], env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "records no update repository" in result.stderr
    assert "--bundle-update REGISTRY/REPO:TAG" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "root").exists()  # refused before anything was written


def test_an_unwritable_bundle_directory_needs_update_output(tmp_path, built, registry):
    if os.geteuid() != 0:
        pytest.skip(reason="mounting a tmpfs needs root")
    app_dir = tmp_path / "ro"
    app_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(app_dir)], check=True)
    try:
        shutil.copy(built["old"], app_dir / "app")
        subprocess.run(["mount", "-o", "remount,ro", str(app_dir)], check=True)
        app, root = app_dir / "app", tmp_path / "root"
        assert ran(start(app, root, "--bundle-key", built["keys"] / "release.pub")) == "1.0.0"
        mark = len(registry.served())
        refused = start(app, root, "--bundle-update", f"{registry.host}/edge/fleet:1.0.1")
        assert refused.returncode == 4 and "--bundle-update-output" in refused.stderr, refused.stderr
        assert registry.served(mark) == []  # refused before any request
        elsewhere = tmp_path / "rw" / "app"
        elsewhere.parent.mkdir()
        done = start(
            app, root, "--bundle-update", f"{registry.host}/edge/fleet:1.0.1", "--bundle-update-output", elsewhere
        )
        assert done.returncode == 0, done.stderr
        assert sha256_of(elsewhere) == sha256_of(built["new"]) and ran(start(elsewhere, root)) == "1.0.1"
    finally:
        subprocess.run(["umount", str(app_dir)], check=False)


def blob_gets(registry, since):
    return [r["uri"] for r in registry.served(since) if r["method"] == "GET" and "/blobs/" in r["uri"]]


@pytest.mark.parametrize("no_pin", [False, True], ids=["pinned", "no-pin"])
def test_a_device_that_installed_a_signed_bundle_with_no_key_refuses_unsigned_and_foreign_updates(
    tmp_path, built, registry, no_pin
):
    """Trust on first use: no --bundle-key and no require_key. The first signed install pins its signer (or, with
    --bundle-no-pin, pins nothing: the running bundle's signer still guards the update)."""
    app = tmp_path / "dev" / "app"
    app.parent.mkdir()
    shutil.copy(built["old"], app)
    root = tmp_path / "root"
    assert ran(start(app, root, *(["--bundle-no-pin"] if no_pin else []))) == "1.0.0"
    pins = sorted(p.read_text() for p in (root / ".trusted-keys").glob("*.pub")) if not no_pin else []
    assert pins == ([] if no_pin else [(built["keys"] / "release.pub").read_text()])
    assert (root / ".trusted-keys").exists() is not no_pin
    fingerprint = bundler("inspect", built["old"]).stdout.split("key ", 1)[1].split()[0]
    before = sha256_of(app)
    for tag, words in (("unsigned", "is not signed"), ("evil", "is signed by key")):
        mark = len(registry.served())
        refused = start(app, root, "--bundle-update", f"{registry.host}/edge/fleet:{tag}")
        assert refused.returncode == 3, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and words in refused.stderr
        assert f"requires a signature by key {fingerprint}" in refused.stderr or f"requires key {fingerprint}" in (
            refused.stderr
        )
        assert "the running bundle's signer" in refused.stderr if no_pin else "keys pinned in" in refused.stderr
        assert len(blob_gets(registry, mark)) == 1  # the config (the signed index): no group was fetched
        assert list((root / ".updates").iterdir()) == [root / ".updates" / ".lock"]
    assert sha256_of(app) == before and ran(start(app, root)) == "1.0.0"
    # the genuine update goes through and pins its signer (not told otherwise this time), once per key
    assert start(app, root, "--bundle-update", f"{registry.host}/edge/fleet:1.0.1").returncode == 0
    assert ran(start(app, root)) == "1.0.1"
    assert len(list((root / ".trusted-keys").glob("*.pub"))) == 1


def _push_doctored(registry, source_tag, tag, change):
    """A registry replaying the genuine signed index under a manifest whose layer sizes it rewrote (PUT by hand:
    bundler push would never write it)."""
    import json

    import requests

    base = f"{registry.url}/v2/edge/fleet/manifests"
    oci = "application/vnd.oci.image.manifest.v1+json"
    index = requests.get(f"{base}/{source_tag}", headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    digest = index.json()["manifests"][0]["digest"]
    doc = requests.get(f"{base}/{digest}", headers={"Accept": oci}).json()
    change(doc)
    put = requests.put(f"{base}/{tag}", data=json.dumps(doc).encode(), headers={"Content-Type": oci})
    assert put.status_code == 201, put.text
    return doc


def test_a_layer_size_no_signature_covers_is_bounded_and_a_refused_update_leaves_nothing(tmp_path, built, registry):
    app, root = device(tmp_path, built)
    before = sha256_of(app)

    def huge_bootloader(doc):  # the attack: a 1 GiB "bootloader" after a signature that holds
        stub, notes = doc["layers"][1], doc["layers"][0]["annotations"]
        grown = (1 << 30) - stub["size"]
        stub["size"] += grown
        for key in ("vnd.bundler.section-offset", "vnd.bundler.pydata-offset"):
            notes[key] = str(int(notes[key]) + grown)

    def short_elf_layer(doc):  # within bounds, but shorter than the bytes the registry serves for that digest
        doc["layers"][0]["size"] -= 7

    for tag, change, words in (
        ("huge", huge_bootloader, "claims 1073741824 bytes, more than the 16777216"),
        ("short", short_elf_layer, "is larger than its"),
    ):
        _push_doctored(registry, "1.0.1", tag, change)
        mark = len(registry.served())
        refused = start(app, root, "--bundle-update", f"{registry.host}/edge/fleet:{tag}")
        assert refused.returncode == 3 and words in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        served = sum(int(r["written"]) for r in registry.served(mark) if "/blobs/" in r["uri"])
        assert served < 64 << 10, served  # the config and at most one small layer
        # nothing kept: no partial blob, no download directory, no temp beside the file, the old version current
        assert list((root / ".updates").iterdir()) == [root / ".updates" / ".lock"]
        assert [p.name for p in app.parent.iterdir()] == ["app"] and sha256_of(app) == before
    assert ran(start(app, root)) == "1.0.0"


def test_only_the_file_a_rollback_needs_is_kept_and_an_update_reuses_it(tmp_path, built, registry):
    app, root = device(tmp_path, built)
    kept = root / ".executables"
    assert start(app, root, "--bundle-update").returncode == 0
    old_id, new_id = os.readlink(root / "previous"), os.readlink(root / "current")
    assert os.listdir(kept) == [old_id]  # the file of 1.0.1 is ./app itself
    assert start(app, root, "--bundle-rollback").returncode == 0
    assert os.listdir(kept) == [new_id] and sha256_of(kept / new_id) == sha256_of(built["new"])
    assert start(app, root, "--bundle-gc").returncode == 0
    assert os.listdir(kept) == [new_id]  # the file of `previous`: what a rollback back needs
    # Forward again by update: every blob comes from the kept file, none from the registry but the signed index.
    mark = len(registry.served())
    again = start(app, root, "--bundle-update")
    assert again.returncode == 0 and "updated fleet 1.0.0 -> 1.0.1" in again.stdout, again.stderr
    assert len(blob_gets(registry, mark)) == 1, blob_gets(registry, mark)
    assert sha256_of(app) == sha256_of(built["new"]) and ran(start(app, root)) == "1.0.1"
    assert os.listdir(kept) == [old_id]


def _publish_head(client, registry, tag, manifest_bytes, media_type, head):
    """The bundle manifest `manifest_bytes` with `head` as its config blob, pushed under `tag` with every digest
    right: what a hostile or compromised registry can serve."""
    import io
    import json

    from payload.oci.reference import parse_reference

    ref = parse_reference(f"{registry.host}/edge/fleet:{tag}")
    digest = "sha256:" + hashlib.sha256(head).hexdigest()
    client.upload_blob(ref, digest, len(head), lambda offset: io.BytesIO(head[offset:]))
    manifest = json.loads(manifest_bytes)
    manifest["config"] = dict(manifest["config"], digest=digest, size=len(head))
    client.put_manifest(ref, tag, json.dumps(manifest).encode(), media_type)


def test_a_hostile_head_under_the_genuine_signature_is_refused_before_it_is_parsed(tmp_path, built, registry):
    # The case: a registry replays the genuine signed content index's signature over a hostile one (deep
    # paths, 8 MiB of {}). The device checks the signature on the raw bytes first: exit 3 in one line, no group
    # fetched, nothing left in .updates, and a peak RSS far from the 1.98 GB a parse before the check took.
    import json

    from bundler.build.make import registry_client
    from payload.oci.reference import parse_reference
    from testing.helpers import measured
    from testing.mutations import HEADER

    client = registry_client((registry.host,))
    ref = parse_reference(f"{registry.host}/edge/fleet:1.0.1")
    manifest_bytes, media_type, _ = client.manifest(ref)
    if "index" in media_type:  # the tag names an image index: its one bundle's manifest
        digest = json.loads(manifest_bytes)["manifests"][0]["digest"]
        manifest_bytes, media_type, _ = client.manifest(ref.with_digest(digest))
    config = json.loads(manifest_bytes)["config"]
    head = client.fetch_blob_bytes(ref, config["digest"], config["size"], limit=config["size"])
    magic, fmt, sig_len, index_len, table_len, data_len, _, table_sha = HEADER.unpack_from(head)
    signature = head[HEADER.size + index_len : HEADER.size + index_len + sig_len]
    table = head[HEADER.size + index_len + sig_len :]
    doc = json.loads(head[HEADER.size : HEADER.size + index_len])
    entry = {"kind": "file", "mode": 0o644, "size": 0, "sha256": "0" * 64}
    hostile = {
        "deep-paths": json.dumps(dict(doc, entries=[dict(entry, path="a/" * 127 + f"f{n}") for n in range(20_000)])),
        "braces": "{}" * (4 << 20),
    }
    app, root = device(tmp_path, built)
    before = sha256_of(app)
    for tag, text in hostile.items():
        index = text.encode()
        header = HEADER.pack(
            magic, fmt, sig_len, len(index), table_len, data_len, hashlib.sha256(index).digest(), table_sha
        )
        _publish_head(client, registry, tag, manifest_bytes, media_type, header + index + signature + table)
        mark = len(registry.served())
        code, stderr, rss_kb = measured(
            [app, "--bundle-dir", root, "--bundle-update", f"{registry.host}/edge/fleet:{tag}"]
        )
        errors = [line for line in stderr.splitlines() if "error:" in line]
        assert code == 3 and len(errors) == 1 and "does not hold" in errors[0], stderr[-600:]
        assert rss_kb < 200 << 10, (tag, rss_kb)
        fetched = [r["uri"] for r in registry.served(mark) if r["method"] == "GET" and "/blobs/sha256:" in r["uri"]]
        assert len(fetched) == 1 and config["digest"] not in fetched[0], fetched  # the hostile head, no group
        assert sha256_of(app) == before and not list((root / ".updates").glob("*/*"))
    assert ran(start(app, root)) == "1.0.0"

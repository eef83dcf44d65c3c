"""`bundler diff A B`: what changed from bundle A to bundle B (files, images, groups, with sizes), what an update
from A to B fetches whole (the blobs of B's registry artifact, payload/oci/artifact.py, that A does not hold: its
head, its changed frames, the stub's bytes that changed; as `--bundle-update` and `bundler pull` fetch them,
before any delta) and with a delta, and the packages their SBOMs list that changed. A and B are bundle files or
registry references (REGISTRY/REPO:TAG, as push and pull take them): of a reference, only its manifests, its
config (the signed index) and what is attached to it (bundler/fleet/referrers.py: the SBOM, the delta manifest from
A) are fetched, never a group.

With a delta: B as a reference answers from the delta `push --delta-from A` published beside it (its patches'
sizes, what a device on A fetches); B and A as files answer with `delta=True` by making the patches here, as that
push would (bundler/fleet/delta.py: the CPU of a level-19 patch per changed frame)."""

import json
import os

from payload.errors import UsageError
from payload.layout import open_payload
from payload.rules import SBOM_PATHS
from payload.sizes import size_text


def _open(source, client=None, arch=None, variant=None):
    """(payload, SBOM text or None, the blobs a registry holds it as: {digest: (what, size)}, where it is) of a
    bundle file, or of a registry reference (read through `client`, picking `arch` / `variant` from a tag that
    holds several)."""
    from payload.oci.artifact import bundle_blobs
    from payload.sbom import read_sbom

    if not os.path.isfile(source):
        return _open_reference(str(source), client, arch, variant)
    with open(source, "rb") as f:
        payload = open_payload(str(source), f)
        try:
            sbom = read_sbom(payload, f).decode()
        except UsageError:  # made by a bundler that wrote no SBOM
            sbom = None
        try:
            blobs = bundle_blobs(payload, f)
        except UsageError:  # a split bundle, or one of an older bundler: its frames only
            blobs = None
    return payload, sbom, _held(payload, blobs), str(source)


def _open_reference(text, client, arch, variant):
    from bundler.fleet.referrers import fetch_sbom
    from payload.oci.artifact import resolve
    from payload.rules import split_reference

    parts = split_reference(text)
    if parts is None or parts[0] is None:  # a path mistyped must not become a request to Docker Hub
        raise UsageError(f"{text}: no such bundle file, nor a registry reference with its registry (REGISTRY/REPO:TAG)")
    pinned, art = resolve(client, text, arch, variant)
    found = fetch_sbom(client, pinned, art.payload.index, f"{text} ({pinned.digest})") if _has_sbom(art) else None
    return art.payload, found[1].decode() if found else None, _held(art.payload, art.blobs), pinned


def _has_sbom(art):
    from payload.sbom import sbom_entry

    return sbom_entry(art.payload.index) is not None


def _held(payload, blobs):
    """{digest: (what, size)} of the blobs a registry holds the bundle as: its frames, and with `blobs` (the
    artifact's) its head and the three stub layers."""
    named = []
    if blobs is not None:
        named = [(blobs.config, "index"), (blobs.elf, "elf"), (blobs.stub, "stub"), (blobs.archive, "stub")]
    held = {b.digest: (what, b.size) for b, what in named}
    for group, frame in payload.index.frames():
        held["sha256:" + frame.sha256] = (group.name, frame.csize)
    return held


def _changes(old, new, same, describe):
    """added, removed and changed between two {key: item} maps; `same(a, b)` says two items are alike."""
    return {
        "added": [describe(None, new[k]) for k in sorted(set(new) - set(old))],
        "removed": [describe(old[k], None) for k in sorted(set(old) - set(new))],
        "changed": [describe(old[k], new[k]) for k in sorted(set(old) & set(new)) if not same(old[k], new[k])],
    }


def _pair(key, **fields):
    """describe(old, new) for _changes: the item's `key`, and `fields` (name: getter) of each side present."""

    def describe(a, b):
        doc = {key: getattr(a or b, key)}
        for label, item in (("old", a), ("new", b)):
            if item is not None:
                doc[label] = {name: get(item) for name, get in fields.items()}
        return doc

    return describe


_file = _pair("path", size=lambda e: e.size, sha256=lambda e: e.sha256, mode=lambda e: e.mode, group=lambda e: e.group)
_image = _pair(
    "name", ref=lambda i: i.ref, digest=lambda i: i.digest, embedded=lambda i: i.embedded, size=lambda i: i.size
)
_group = _pair("name", size=lambda g: g.size, stored=lambda g: g.csize, frames=lambda g: len(g.frames))


def diff(old_path, new_path, client=None, arch=None, variant=None, delta=False):
    """The difference as a JSON-able dict; `client` reads the sides that are registry references. `delta`: of two
    files, make the patches to say what an update with a delta fetches."""
    (a, a_sbom, a_blobs, old_where), (b, b_sbom, b_blobs, new_where) = (
        _open(side, client, arch, variant) for side in (old_path, new_path)
    )
    ai, bi = a.index, b.index
    sbom_paths = set(SBOM_PATHS.values())
    files_a = {e.path: e for e in ai.files() if e.path not in sbom_paths}
    files_b = {e.path: e for e in bi.files() if e.path not in sbom_paths}
    # What `--bundle-update` and `bundler pull` fetch: every blob of B's artifact that A does not hold.
    fetched = [held for digest, held in b_blobs.items() if digest not in a_blobs]
    doc = {
        "old": _identity(a, old_where),
        "new": _identity(b, new_where),
        "files": _changes(
            files_a, files_b, lambda x, y: (x.sha256, x.mode, x.size) == (y.sha256, y.mode, y.size), _file
        ),
        "images": _changes(
            {i.name: i for i in ai.images},
            {i.name: i for i in bi.images},
            lambda x, y: (x.digest, x.embedded, x.ref) == (y.digest, y.embedded, y.ref),
            _image,
        ),
        "groups": _changes(
            {g.name: g for g in ai.groups},
            {g.name: g for g in bi.groups},
            lambda x, y: [f.sha256 for f in x.frames] == [f.sha256 for f in y.frames],
            _group,
        ),
        "update": {
            "fetched_whole": sum(size for _, size in fetched),
            "blobs": len(fetched),
            "of_blobs": len(b_blobs),
            "size": sum(size for _, size in b_blobs.values()),
            "parts": sorted({what for what, _ in fetched}),
        },
    }
    whole = doc["update"]["fetched_whole"]
    if isinstance(new_where, str):  # B is a file
        patches = _made_patches(old_path, a, new_path, b) if delta and isinstance(old_where, str) else None
    else:
        patches = _published_patches(client, new_where, a.bundle_id, b.index)
    doc["update"]["with_delta"] = None if patches is None else _with_delta(whole, patches)
    if a_sbom is not None and b_sbom is not None:
        from bundler.sbom.compare import changes

        doc["packages"] = changes(a_sbom, b_sbom)
    else:
        doc["packages"] = None
    return doc


def _published_patches(client, pinned, from_bundle, index):
    """[(group, frame csize, patch size)] of the delta from `from_bundle` published beside `pinned`, [] when the
    registry holds none from it (an update fetches whole)."""
    from payload.oci.artifact import published_patches

    csize = {"sha256:" + frame.sha256: frame.csize for _, frame in index.frames()}
    return [
        (patch.group, csize.get("sha256:" + patch.to_sha256, 0), layer.size)
        for patch, layer in published_patches(client, pinned, from_bundle)
    ]


def _made_patches(old_path, old_payload, new_path, new_payload):
    """[(group, frame csize, patch size)] of the patches `push --delta-from OLD` would publish, made here."""
    import tempfile

    from bundler.fleet.delta import changed_frames, patch_frame

    found = []
    with tempfile.TemporaryDirectory(prefix="bundler-diff-") as work:
        for group, frame in changed_frames(old_payload.index, new_payload.index):
            made = patch_frame(old_path, old_payload, new_path, new_payload, group, frame, work, lambda _: None)
            if made is not None:
                found.append((group.name, frame.csize, made[3]))
                os.unlink(made[1])
    return found


def _with_delta(whole, patches):
    """What an update fetches when the patches `[(group, frame csize, patch size)]` stand in for their frames."""
    return {
        "fetched": whole - sum(csize for _, csize, _ in patches) + sum(size for _, _, size in patches),
        "patches": [{"group": g, "frame_csize": c, "patch_size": p} for g, c, p in patches],
    }


def _identity(payload, path):
    i = payload.index
    return {
        "path": str(path),
        "name": i.name,
        "version": i.version,
        "variant": i.variant,
        "arch": i.arch,
        "bundle_id": payload.bundle_id,
    }


def render(doc, as_json=False):
    if as_json:
        return json.dumps(doc, indent=2, sort_keys=True)
    lines = []
    for label in ("old", "new"):
        d = doc[label]
        lines.append(
            f"{label}:      {d['name']} {d['version']} ({d['variant']}, {d['arch']}) {d['path']}, "
            f"bundle id {d['bundle_id'][:16]}"
        )
    for what, describe in (("files", _file_line), ("images", _image_line), ("groups", _group_line)):
        changed = doc[what]
        if not any(changed.values()):
            lines.append(f"{what + ':':<9} no change")
        for sign, key in (("+", "added"), ("-", "removed"), ("~", "changed")):
            for item in changed[key]:
                lines.append(f"{what + ':':<9} {sign} {describe(item)}")
    u = doc["update"]
    lines.append(
        f"update:   fetches {size_text(u['fetched_whole'])} whole of {size_text(u['size'])} ({u['blobs']} of "
        f"{u['of_blobs']} blob(s){': ' + ', '.join(u['parts']) if u['parts'] else ''})"
    )
    delta = u.get("with_delta")
    if delta is None:
        lines.append(
            "update:   with a delta: not known (diff the pushed references, or the files with --delta to make the "
            "patches)"
        )
    elif not delta["patches"]:
        lines.append("update:   with a delta: none published from the old bundle; an update fetches whole")
    else:
        carried = ", ".join(
            f"{p['group']} {size_text(p['patch_size'])} for {size_text(p['frame_csize'])}" for p in delta["patches"]
        )
        lines.append(f"update:   with a delta: fetches {size_text(delta['fetched'])} ({carried})")
    packages = doc["packages"]
    if packages is None:
        lines.append("packages: unknown (a bundle without an SBOM, or pushed without one)")
    elif not any(packages.values()):
        lines.append("packages: no change")
    else:
        for p in packages["added"]:
            lines.append(f"packages: + {p['name']} {p['version'] or ''}".rstrip())
        for p in packages["removed"]:
            lines.append(f"packages: - {p['name']} {p['version'] or ''}".rstrip())
        for p in packages["changed"]:
            lines.append(f"packages: ~ {p['name']} {p['old']} -> {p['new']}")
    return "\n".join(lines)


def _sizes(item, key, fmt):
    old, new = item.get("old"), item.get("new")
    if old and new:
        return f"{fmt(old[key])} -> {fmt(new[key])}"
    return fmt((old or new)[key])


def _file_line(item):
    return f"{item['path']} ({_sizes(item, 'size', size_text)})"


def _image_line(item):
    old, new = item.get("old"), item.get("new")
    if old and new:
        return f"{item['name']} {old['digest'][:19]} -> {new['digest'][:19]}"
    return f"{item['name']} {(old or new)['ref']}@{(old or new)['digest'][:19]}"


def _group_line(item):
    return f"{item['name']} ({_sizes(item, 'stored', size_text)} stored)"

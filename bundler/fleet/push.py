"""`bundler push`: bundles to an OCI registry as artifacts (payload/oci/artifact.py), several architectures of one
version under one tag. Blobs the registry has already are not sent again (HEAD first). The SBOM and provenance
beside each bundle are attached to its manifest as referrers (bundler/fleet/referrers.py)."""

from pathlib import Path

from bundler.cache import file_sha256
from bundler.fleet.referrers import push_side_files
from bundler.media.outputs import side_files
from payload.errors import UsageError
from payload.layout import open_payload
from payload.oci import artifact
from payload.oci.reference import OCI_MANIFEST, load_json, parse_reference
from payload.outside import check_outside
from payload.sizes import size_text


class _Opened:
    def __init__(self, path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            self.payload = open_payload(str(self.path), f)
            self.blobs = artifact.bundle_blobs(self.payload, f)
            check_outside(self.payload, f)  # a damaged stub never leaves this host
        self.side_files = side_files(self.path, self.payload.index)  # nor an SBOM of another build
        self.sha256 = file_sha256(self.path)
        self.manifest = artifact.manifest_bytes(self.payload.index, self.blobs, self.sha256)

    def opener(self, blob):
        return lambda offset: artifact.SpanReader(str(self.path), blob.spans, offset)


def push(bundles, target, client, log, delta_from=()):
    """Push `bundles` (paths) to `target` (REGISTRY/REPO:TAG) and set the tag's image index; returns its digest.
    With `delta_from` (older bundle files or references), a delta from each to every bundle (bundler/fleet/delta.py)."""
    ref = parse_reference(target)
    if ref.digest:
        raise UsageError(f"push to a tag (REGISTRY/REPO:TAG), not to a digest: {target}")
    opened = [_Opened(p) for p in bundles]
    entries = []
    for bundle in opened:
        index = bundle.payload.index
        sent = skipped = 0
        for blob in bundle.blobs.all:
            if client.upload_blob(ref, blob.digest, blob.size, bundle.opener(blob), label=_label(blob)):
                sent += blob.size
            else:
                skipped += blob.size
        digest = client.put_manifest(ref, artifact.sha256_of(bundle.manifest), bundle.manifest, OCI_MANIFEST)
        log(
            f"{bundle.path}: {index.name} {index.version} {index.arch}/{index.variant}: sent {size_text(sent)}, "
            f"{size_text(skipped)} already there ({len(bundle.blobs.all)} blobs), manifest {digest}"
        )
        attached = push_side_files(client, ref, bundle.manifest, index, bundle.side_files)
        if attached:
            log(f"{bundle.path}: attached {', '.join(p.name for p, _ in attached)} (referrers of {digest})")
        else:
            log(f"{bundle.path}: no SBOM beside it to attach; `bundler pull --sbom` will find none")
        entries.append(artifact.index_entry(index, bundle.manifest, bundle.sha256))
        if delta_from:
            from bundler.fleet import delta

            delta.publish(
                client,
                ref,
                bundle.path,
                bundle.payload,
                bundle.manifest,
                delta_from,
                log=log,
            )
    merged, dropped = artifact.merge_index(_existing_index(client, ref), entries, str(ref))
    for gone in dropped:
        log(f"{str(ref)}: no longer lists {gone} (another version)")
    return client.put_manifest(ref, ref.tag, merged, artifact.OCI_INDEX), len(load_json(merged, "index")["manifests"])


def _label(blob):
    if blob.frame is not None:
        return f"pushing {blob.frame.group}"
    return "pushing {}".format(
        {artifact.ELF_TYPE: "ELF header", artifact.STUB_TYPE: "stub", artifact.ARCHIVE_TYPE: "pydata"}.get(
            blob.media_type, "index"
        )
    )


def _existing_index(client, ref):
    """The tag's image index as an `existing` for merge_index: None when the tag is new; a single bundle's
    manifest counts as an index of one."""
    found = client.manifest(ref)
    if found is None:
        return None
    data, media_type, digest = found
    doc = load_json(data, f"manifest of {ref}")
    if doc.get("artifactType") != artifact.ARTIFACT_TYPE:
        raise UsageError(
            "{} holds something that is not a bundle ({}); push to another repository or tag".format(
                ref, doc.get("artifactType") or media_type
            )
        )
    if media_type == artifact.OCI_INDEX:
        return doc
    notes = doc.get("annotations") or {}
    platform = artifact.platform_of_arch(notes.get(artifact.ARCH)) if notes.get(artifact.ARCH) else {}
    return {
        "manifests": [
            {
                "mediaType": media_type,
                "artifactType": artifact.ARTIFACT_TYPE,
                "digest": digest,
                "size": len(data),
                "platform": platform,
                "annotations": notes,
            }
        ]
    }

"""Manifests that refer to a bundle's manifest by their OCI 1.1 `subject`: its SBOM and its provenance (the side
files make writes beside it, bundler/media/outputs.py), and the deltas to it (bundler/fleet/delta.py).

Each is an OCI image manifest as image-spec 1.1 recommends for an artifact with no config of its own: its
`artifactType` says what it is, its config is the empty descriptor, its one layer the file, and its `subject` the
bundle's manifest. attach() pushes one and lists it where readers look: a registry with the referrers API lists
it itself (it says so with the `OCI-Subject` header), else the referrers tag `sha256-<hex>` of the subject holds an
image index of them (the distribution spec's tag fallback; Debian's docker-registry 2.8 has no referrers API).
Readers go through RegistryClient.referrers(): the API when it answers, else that tag."""

import hashlib
import io

from bundler.media.outputs import SBOM_SUFFIXES, byproduct_digests, provenance_path, sbom_path
from payload.errors import IntegrityError, NetworkError, UsageError
from payload.oci import artifact
from payload.oci.reference import OCI_INDEX, OCI_MANIFEST, descriptor_from, load_json, sha256_digest
from payload.oci.registry import referrers_tag

# artifactType and layer media type of each side file: SPDX's and CycloneDX's IANA media types; the provenance is
# a DSSE envelope, as the in-toto attestation framework names it
SBOM_TYPES = {"spdx": "application/spdx+json", "cyclonedx": "application/vnd.cyclonedx+json"}
PROVENANCE_TYPE = "application/vnd.dsse.envelope.v1+json"
PREDICATE_TYPE = "in-toto.io/predicate-type"  # the annotation buildkit and cosign give an attestation's layer
MAX_SIDE_FILE = 64 << 20  # the most a side file's blob may claim: an SBOM of a few thousand files is a few MB


def attach(client, ref, manifest, same=()):
    """Push `manifest` (bytes; it has a `subject`) into `ref`'s repository and list it among its subject's
    referrers; an earlier one of the same artifactType (and the same annotations `same`) is replaced in the tag.
    Returns its digest."""
    subject = load_json(manifest, "referrer manifest")["subject"]["digest"]
    if client.put_referrer(ref, manifest, OCI_MANIFEST) == subject:
        return sha256_digest(manifest)  # the registry lists it itself
    tag = ref._replace(tag=referrers_tag(subject), digest=None)
    found = client.manifest(tag)
    existing = None if found is None else load_json(found[0], f"referrers tag {tag.tag} of {ref.name}")
    client.put_manifest(ref, tag.tag, artifact.with_referrer(existing, manifest, same), OCI_INDEX)
    return sha256_digest(manifest)


def push_empty_config(client, ref):
    """The empty descriptor's blob `{}`, the config of every referrer manifest here."""
    client.upload_blob(
        ref, artifact.sha256_of(artifact.EMPTY), len(artifact.EMPTY), lambda offset: io.BytesIO(artifact.EMPTY[offset:])
    )


def side_file_manifest(subject, kind, name, data, bundle_id):
    """The manifest of one side file (`kind`: its artifactType) named `name`, whose subject is the bundle's
    manifest `subject` (bytes)."""
    layer = {
        "mediaType": kind,
        "digest": artifact.sha256_of(data),
        "size": len(data),
        "annotations": {artifact.OCI_TITLE: name},
    }
    notes = {artifact.BUNDLE_ID: bundle_id}
    if kind == PROVENANCE_TYPE:
        notes[PREDICATE_TYPE] = layer["annotations"][PREDICATE_TYPE] = "https://slsa.dev/provenance/v1"
    return artifact.canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": kind,
            "config": artifact.empty_descriptor(),
            "layers": [layer],
            "subject": {"mediaType": OCI_MANIFEST, "digest": sha256_digest(subject), "size": len(subject)},
            "annotations": notes,
        }
    )


def kind_of(path):
    """The artifactType of the side file at `path` (named as outputs.py names them)."""
    for fmt, suffix in SBOM_SUFFIXES.items():
        if path.name.endswith(suffix):
            return SBOM_TYPES[fmt]
    return PROVENANCE_TYPE


def push_side_files(client, ref, subject, index, carried):
    """Attach each side file of `carried` ([(path, sha256)] from outputs.side_files, checked) to the bundle
    whose manifest is `subject`; returns [(path, referrer digest)]."""
    if not carried:
        return []
    push_empty_config(client, ref)
    done = []
    for path, sha256 in carried:
        data = path.read_bytes()
        if artifact.sha256_of(data) != "sha256:" + sha256:
            raise IntegrityError(f"{path} changed while being pushed; do not change it during the push")
        kind = kind_of(path)
        client.upload_blob(ref, "sha256:" + sha256, len(data), lambda offset, d=data: io.BytesIO(d[offset:]))
        manifest = side_file_manifest(subject, kind, path.name, data, index.bundle_id)
        done.append((path, attach(client, ref, manifest)))
    return done


def fetch_side_files(client, pinned, index, where, output):
    """[(path beside `output`, bytes)] of the SBOM and the provenance attached to the bundle manifest `pinned` (a
    reference by digest) whose content index is `index`, each checked (fetch_sbom; the provenance must name that
    SBOM among its byproducts). A bundle pushed without an SBOM is a NetworkError (exit 5: the registry does not
    hold it); without a provenance, only the SBOM is returned."""
    by_type = _referrers_by_type(client, pinned)
    found = fetch_sbom(client, pinned, index, where, by_type)
    if found is None:
        raise NetworkError(
            f"{where} was pushed without its SBOM (no referrer of type {' or '.join(SBOM_TYPES.values())}); push it "
            "again from a directory with the SBOM make wrote beside it, or pull without --sbom"
        )
    fmt, sbom = found
    got = [(sbom_path(output, fmt), sbom)]
    if PROVENANCE_TYPE in by_type:
        provenance = _fetch_one(client, pinned, by_type[PROVENANCE_TYPE], PROVENANCE_TYPE)
        if hashlib.sha256(sbom).hexdigest() not in byproduct_digests(provenance):
            raise IntegrityError(f"the provenance attached to {where} does not name its SBOM; it is another build's")
        got.append((provenance_path(output), provenance))
    return got


def fetch_sbom(client, pinned, index, where, by_type=None):
    """(format, bytes) of the SBOM attached to the bundle manifest `pinned` whose content index is `index`, its
    blob checked against its digest and its sha256 against the SBOM entry of the signed index; None when none is
    attached. `by_type`: the referrers by artifactType, when the caller has them."""
    from payload.sbom import sbom_entry

    entry = sbom_entry(index)
    if entry is None:
        raise UsageError(f"{where} holds no SBOM (made by bundler {index.bundler_version}); make it again and push it")
    by_type = _referrers_by_type(client, pinned) if by_type is None else by_type
    fmt = next((f for f, kind in SBOM_TYPES.items() if kind in by_type), None)
    if fmt is None:
        return None
    sbom = _fetch_one(client, pinned, by_type[SBOM_TYPES[fmt]], SBOM_TYPES[fmt])
    if sha256_digest(sbom) != "sha256:" + entry.sha256:
        raise IntegrityError(
            f"the SBOM attached to {where} is {sha256_digest(sbom)}, the bundle's signed index says "
            f"sha256:{entry.sha256}; it is not this bundle's SBOM"
        )
    return fmt, sbom


def _referrers_by_type(client, pinned):
    """{artifactType: the first referrers index entry of that type} of the manifest `pinned`."""
    by_type = {}
    for found in (client.referrers(pinned, pinned.digest) or {}).get("manifests") or []:
        if isinstance(found, dict) and found.get("artifactType") not in by_type:
            by_type[found.get("artifactType")] = found
    return by_type


def _fetch_one(client, pinned, entry, kind):
    """The one layer's bytes of the referrer `entry` (a referrers index entry) of type `kind`, verified."""
    digest = descriptor_from(entry, f"referrer of {pinned}").digest
    where = f"{pinned.name}@{digest}"
    doc = load_json(client.fetch_manifest(pinned.with_digest(digest)), where)
    layers = doc.get("layers") if isinstance(doc.get("layers"), list) else []
    if doc.get("artifactType") != kind or (doc.get("subject") or {}).get("digest") != pinned.digest or len(layers) != 1:
        raise IntegrityError(f"{where} is not the {kind} of {pinned}: its type, subject or layers do not fit")
    layer = descriptor_from(layers[0], f"{where} layer")
    if layer.size > MAX_SIDE_FILE:
        raise IntegrityError(f"{where} claims a layer of {layer.size} bytes, more than a side file may have")
    return client.fetch_blob_bytes(pinned, layer.digest, layer.size, limit=MAX_SIDE_FILE)

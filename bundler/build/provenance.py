"""Where a bundle came from, provably: an in-toto v1 Statement with a SLSA Provenance v1 predicate (the builder,
the build type, the parameters, and the sha256 of the manifest, the lock, every source, every image and the stub),
in a DSSE envelope signed with the bundle's own key (`make --sign`), written beside the output as
NAME.intoto.json (bundler/media/outputs.py). Unsigned builds write the envelope with no signature."""

import base64
import json
import os
import platform
import socket
import uuid
from datetime import datetime, timezone
from pathlib import Path

from bundler import __version__
from bundler.cache import file_sha256

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:bundler:make:v1"  # docs/sbom.md, Provenance: what the parameters mean
BUILDER_ENV = "BUNDLER_BUILDER_ID"  # a CI names its builder here; else this host


def _file(name, path):
    return {"name": name, "uri": Path(os.path.abspath(path)).as_uri(), "digest": {"sha256": file_sha256(path)}}


def statement(subjects, parameters, manifest, lock_path, files, fetched, images, stub, byproducts, started):
    """The in-toto Statement. `subjects`: {file name: sha256} of what was written; `files`: the SBOM's FileItems;
    `fetched`: {path: sha256 of its source as downloaded}; `images`: the SBOM's ImageItems; `byproducts`: paths."""
    dependencies = [_file("manifest", manifest.path)]
    if Path(lock_path).is_file():
        dependencies.append(_file("lock", lock_path))
    for item in files:
        dependency = {"name": f"file:{item.path}", "uri": item.source, "digest": {"sha256": fetched[item.path]}}
        if item.extract:
            dependency["annotations"] = {"extract": item.extract, "member_sha256": item.sha256}
        dependencies.append(dependency)
    for image in images:
        dependencies.append(
            {"name": f"image:{image.name}", "uri": image.purl, "digest": {"sha256": image.digest.partition(":")[2]}}
        )
    dependencies.append(_file("stub", stub))
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": sha}} for name, sha in sorted(subjects.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": parameters,
                "internalParameters": {"bundler_version": __version__},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": os.environ.get(BUILDER_ENV) or f"urn:bundler:host:{socket.gethostname()}",
                    "version": {"bundler": __version__, "python": platform.python_version()},
                },
                "metadata": {
                    "invocationId": f"urn:uuid:{uuid.uuid4()}",
                    "startedOn": _time(started),
                    "finishedOn": _time(datetime.now(timezone.utc)),
                },
                "byproducts": [{"name": Path(p).name, "digest": {"sha256": file_sha256(p)}} for p in byproducts],
            },
        },
    }


def _time(moment):
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pae(payload_type, body):
    """DSSE's pre-authentication encoding: what is signed (github.com/secure-systems-lab/dsse, protocol.md)."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(body), body)


def envelope(doc, signing):
    """The DSSE envelope of the statement `doc`, signed by `signing` (bundler/build/signing.py) when it signs."""
    body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    signed = signing.sign(pae(PAYLOAD_TYPE, body))
    signatures = []
    if signed is not None:
        keyid, signature = signed
        signatures.append({"keyid": keyid, "sig": base64.b64encode(signature).decode()})
    return {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(body).decode(), "signatures": signatures}

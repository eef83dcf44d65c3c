"""stub/images.py: the archives written at install from the extracted blobs."""

import hashlib
import json
import os
from types import SimpleNamespace

import pytest

from payload.errors import IntegrityError
from payload.index import LAYERS_RAW, ImageRecord
from stub import images


def _put_blob(work, data):
    hexdigest = hashlib.sha256(data).hexdigest()
    path = os.path.join(work, "images", "blobs", "sha256", hexdigest)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return "sha256:" + hexdigest


def test_an_image_blob_missing_from_the_work_dir_is_an_integrity_error(tmp_path):
    """A damaged bundle, not a broken host: exit 3 naming the image, never a FileNotFoundError (exit 4)."""
    work = str(tmp_path)
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    record = ImageRecord(
        "pause",
        "registry.k8s.io/pause:3.10",
        "linux/amd64",
        digest,
        True,
        digest,
        LAYERS_RAW,
        len(manifest) + len(config),
    )
    index = SimpleNamespace(images=[record])
    with pytest.raises(IntegrityError, match="image 'pause': its manifest sha256:[0-9a-f]+ is not in the bundle"):
        images.write_embedded(work, index)
    _put_blob(work, manifest)
    with pytest.raises(
        IntegrityError, match="image 'pause': its config sha256:[0-9a-f]+ is not in the bundle"
    ) as caught:
        images.write_embedded(work, index)
    assert caught.value.exit_code == 3
    _put_blob(work, config)
    images.write_embedded(work, index)
    assert sorted(os.listdir(os.path.join(work, "images"))) == [".state", "pause.tar"]
    assert images.read_state(os.path.join(work, "images")) == {"pause": ("ready", digest, "")}

"""`bundler pull`: the one-file executable rebuilt from a registry byte for byte (payload/oci/artifact.py), with its
`.sha256` beside it, written atomically. Blobs are kept in a download directory beside the output until the
executable is whole, so an interrupted pull resumes. With `sbom`, the SBOM and the provenance attached to it
(bundler/fleet/referrers.py) go beside it too, checked against its signed index before anything is written."""

import os
from pathlib import Path

from bundler.cache import file_sha256
from bundler.media.outputs import remove_dead_temps, remove_foreign_side_files, write_checksum
from payload import fs
from payload.errors import IntegrityError
from payload.oci import artifact
from payload.sizes import size_text


def download_dir(output):
    return output.with_name("." + output.name + ".pull")


def pull(reference, output, client, arch=None, variant=None, log=print, sbom=False):
    """Rebuild the bundle `reference` names (for `arch` / `variant` from an image index) at `output`, and with
    `sbom` its side files beside it."""
    output = Path(output)
    pinned, art = artifact.resolve(client, reference, arch, variant)
    index = art.payload.index
    sides = []
    if sbom:  # fetched first: a bundle pushed without them is refused before a byte is written
        from bundler.fleet.referrers import fetch_side_files

        sides = fetch_side_files(client, pinned, index, f"{reference} ({pinned.digest})", output)
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(output)  # of a killed pull
    downloads = download_dir(output)
    fs.safe_mkdir(str(downloads))
    paths, fetched = {}, 0
    for blob in art.blobs.layers:
        paths[blob.digest], size = artifact.fetch_blob_into(client, pinned, blob, str(downloads))
        fetched += size
    with fs.atomic_path(str(output), mode=0o755) as temp:
        with open(temp, "wb") as out:
            artifact.rebuild(out, art, lambda blob: open(paths[blob.digest], "rb"))
        artifact.verify_rebuilt(temp, art)
        digest = file_sha256(temp)
        if art.file_sha256 and digest != art.file_sha256:
            raise IntegrityError(
                f"{reference}: the rebuilt executable has sha256 {digest}, the manifest says {art.file_sha256}; the "
                "artifact is damaged"
            )
    write_checksum(output, digest)
    for path, data in sides:
        fs.write_atomic(str(path), data)
    remove_foreign_side_files(output, index)
    fs.safe_rmtree(str(downloads))
    log(
        f"{output}  ({index.name} {index.version} {index.arch}/{index.variant}, {size_text(os.path.getsize(output))}, "
        f"fetched {size_text(fetched)}, sha256 {digest}, from {pinned})"
    )
    for path, data in sides:
        log(f"{path}  ({size_text(len(data))}, attached to {pinned.digest}, checked against the bundle's index)")
    return digest

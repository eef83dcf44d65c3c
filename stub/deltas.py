"""Deltas in --bundle-update (stub/update.py asks `frame` for each frame this file does not hold): the delta
from the running (installed) version to the new one is found through the registry's referrers API or its tag
fallback; a changed frame with a patch there is decoded against the installed files, every entry checked against
the signed content index, and encoded again at payload.delta.REENCODE_LEVEL (payload/delta.py), after the memory it
needs was checked against this device's bound and before anything else is fetched for it. The rebuilt executable
then holds that frame re-encoded (`reencoded`; payload/oci/artifact.py writes its encoding table). Whatever fails,
the frame is fetched whole, and stderr says why. docs/fleet.md, "Deltas".
"""

import os
import sys

from payload import delta, fs
from payload.errors import BundleError
from payload.oci import artifact
from payload.sizes import size_text
from stub.root import Installation


class Deltas:
    def __init__(self, client, pinned, art, running, root, downloads, bound, stream=None):
        self.client, self.pinned, self.art, self.running = client, pinned, art, running
        self.root, self.downloads, self.bound = root, downloads, bound
        self.stream = stream or sys.stderr
        self.patches = None
        self.used = []  # (group, patch bytes, frame bytes)
        self.reencoded = {}  # published frame digest: (sha256, csize, level) of the frame encoded here
        # Entry path: its file as a patch decoded it (checked, with its mode, fsynced), for the install to link
        # rather than decode the frame again (stub/install.py). Under `downloads`, removed with it.
        self.decoded = {}

    def _lookup(self):
        """{new frame digest: (Patch, its layer)} of the delta from the running version, fetched once."""
        if self.patches is not None:
            return self.patches
        self.patches = {}
        if self.bound <= 0:
            return self.patches
        try:
            for patch, layer in artifact.published_patches(self.client, self.pinned, self.running.bundle_id):
                self.patches["sha256:" + patch.to_sha256] = (patch, layer)
        except BundleError as exc:
            self.stream.write(f"no delta used: {exc}; changed groups are fetched whole\n")
        return self.patches

    def frame(self, sources, blob):
        """The path of the new frame `blob` rebuilt from its patch, or None (fetch it whole)."""
        if blob.frame is None:
            return None
        hexdigest = blob.digest.split(":", 1)[1]
        target = os.path.join(self.downloads, hexdigest)
        if artifact.file_matches(target, blob.digest):  # fetched whole by an update that was then interrupted
            return target
        found = self._lookup().get(blob.digest)
        if found is None:
            return None
        patch, layer = found
        group = blob.frame.group
        work = os.path.join(self.downloads, hexdigest + ".delta")
        try:
            new_entries = delta.frame_entries(self.art.payload.index, group, hexdigest)
            if patch.group != group or new_entries is None:
                raise delta.DeltaUnusable("its record names another frame")
            old_entries = delta.reference_entries(self.running.index, new_entries)
            delta.check_memory(patch, self.bound)  # from the record alone, before the patch is fetched
            if layer.size >= blob.size:  # the frame's size is signed, the patch's is not: it bounds the download
                raise delta.DeltaUnusable(f"its patch claims {layer.size} bytes, no fewer than the group's {blob.size}")
            old = Installation(self.root, self.running.bundle_id)
            if not old.is_installed():
                raise delta.DeltaUnusable(f"this version is not installed in {self.root}")
            patch_path, fetched = artifact.fetch_blob_into(self.client, self.pinned, layer, self.downloads)
            sources.fetched += fetched
            fs.safe_rmtree(work)
            files = os.path.join(work, "files")  # the decoded files, by entry path; the frame beside them
            os.makedirs(files)
            out = os.path.join(work, "frame")
            self.stream.write(
                f"applying the delta of group {group!r} ({size_text(layer.size)} patch): decoding against the "
                f"installed files, checking them against the signed index, encoding at zstd level "
                f"{delta.REENCODE_LEVEL}\n"
            )
            self.stream.flush()
            sha256, csize = delta.apply(patch, patch_path, old.path, old_entries, new_entries, files, out, self.bound)
            self.used.append((group, layer.size, blob.size))
            kept = os.path.join(self.downloads, hexdigest + ".decoded")
            fs.safe_rmtree(kept)
            os.replace(files, kept)
            self.decoded.update((e.path, os.path.join(kept, e.path)) for e in new_entries)
            if sha256 == hexdigest:  # published at this level: the very frame, and the file stays the published one
                os.replace(out, target)
                return target
            encoded = target + ".reencoded"  # not named by the published digest: its bytes are this device's
            os.replace(out, encoded)
            self.reencoded[blob.digest] = (sha256, csize, delta.REENCODE_LEVEL)
            return encoded
        except BundleError as exc:
            delta.say_fallback(group, exc, self.stream)
            return None
        except OSError as exc:
            delta.say_fallback(group, exc.strerror or exc, self.stream)
            return None
        finally:
            fs.safe_rmtree(work)

    def summary(self):
        if not self.used:
            return ""
        return "; as deltas: {}".format(
            ", ".join(f"{g} ({size_text(p)} patch for a {size_text(f)} group)" for g, p, f in self.used)
        )

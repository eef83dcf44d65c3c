"""The bundle's SBOM, read back from its payload: `bundler inspect --sbom` and the stub's `--bundle-sbom`. It is an
ordinary entry (payload/rules.py SBOM_PATHS), so reading it checks its frame and its sha256 against the index
like any install does."""

import os
import tempfile

from payload import fs
from payload.errors import UsageError
from payload.rules import SBOM_PATHS


def sbom_entry(index):
    """The index's SBOM entry, or None for a bundle made without one (by an older bundler)."""
    paths = set(SBOM_PATHS.values())
    return next((e for e in index.entries if e.path in paths), None)


def read_sbom(payload, f):
    """The SBOM's bytes, verified; a UsageError naming the bundle when it holds none."""
    from payload.groups import extract_group

    entry = sbom_entry(payload.index)
    if entry is None:
        raise UsageError(
            f"{payload.path} holds no SBOM (made by bundler {payload.index.bundler_version}); make it "
            f"again with a newer bundler"
        )
    group = payload.index.group(entry.group)
    work = tempfile.mkdtemp(prefix=".bundle-sbom-")
    try:
        data = payload.open_data(f)
        with data.verifying(complete=False):
            extract_group(data, payload.data_offset, group, payload.index.entries_of(group.name), work)
        with open(os.path.join(work, entry.path), "rb") as out:
            return out.read()
    finally:
        fs.safe_rmtree(work)

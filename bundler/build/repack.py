"""`bundler repack`: the same bundle packed again, at another zstd level or frame size, with no key.

Format 4 signs what a device installs and runs (the content index), not how it is packed (the encoding table,
docs/format.md section 3.5), so a repack copies the content index bytes and the signature block as they are and
writes a new table: the bundle id and the signature stay. Every entry is decoded and checked against its signed
sha256 before it is compressed again, the stub is checked against the index's stub_sha256, a signature present
must hold, and the written file is read back (assemble.check_written) before it is renamed into place. The SBOM
and provenance beside the bundle are checked to belong to it and go beside the output (bundler/media/outputs.py).
"""

import os
import tempfile
from pathlib import Path

from bundler.build.assemble import lay_out, write_bundle
from bundler.build.compress import Member, compress
from bundler.build.cuts import DEFAULT_FRAME_SIZE
from bundler.media.outputs import carry_side_files, remove_dead_temps, side_files
from payload import fs
from payload import progress as progress_display
from payload.errors import IntegrityError
from payload.groups import extract_group
from payload.layout import open_payload
from payload.outside import check_outside
from payload.signing import signer


def repack(bundle, output, cache, level=19, frame_size=DEFAULT_FRAME_SIZE, log=print):
    """Write `bundle` packed again to `output` (which may be `bundle`); returns the new index. A split bundle
    comes out whole: `bundler split` cuts it again."""
    bundle, output = Path(bundle), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(output)  # of a killed repack
    # The decoded entries, beside the output, named like payload/fs.py's temp files (with the writer's PID).
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}{fs.TEMP_MARK}{os.getpid()}-", dir=output.parent))
    try:
        with open(bundle, "rb") as f:
            payload = open_payload(str(bundle), f)
            signer(payload)  # a signature kept must hold: a broken one is refused here, not on a device
            check_outside(payload, f)  # the stub kept must be the one the content index names
            carried = side_files(bundle, payload.index)  # and so must the SBOM and provenance carried beside it
            groups = _decode_and_compress(payload, f, work, cache, level, frame_size, log)
        index_groups, entries = lay_out(groups)
        index = payload.index.with_groups(index_groups, {e.path: (e.group, e.offset) for e in entries})
        if index.to_bytes() != payload.index_bytes:
            # The kept bytes are what the id and the signature cover; a content index this reader would write
            # differently (not canonical) is kept as it is, and still parsed the same way by every device.
            log(f"note: {bundle} stores its content index in a form of its own; it is kept byte for byte")
        write_bundle(
            bundle, index, groups, output, signature=payload.signature, index_bytes=payload.index_bytes, replace=True
        )
        carry_side_files(carried, bundle, output)
        return index
    finally:
        fs.safe_rmtree(work)


def _decode_and_compress(payload, f, work, cache, level, frame_size, log):
    """Each group decoded into `work` (every frame's and entry's sha256 checked) and compressed again."""
    index = payload.index
    data = payload.open_data(f)
    compressed = []
    try:
        with data.verifying():  # a split bundle's parts are hashed as they are read
            for group in index.groups:
                entries = index.entries_of(group.name)
                dest = work / group.name
                dest.mkdir(parents=True)
                display = progress_display.callback()
                try:
                    extract_group(
                        data,
                        payload.data_offset,
                        group,
                        entries,
                        str(dest),
                        progress=lambda done, total, name=group.name, show=display: show(
                            "decoding " + name, done, total
                        ),
                    )
                except IntegrityError as exc:
                    raise IntegrityError(f"{payload.path}: {exc}; nothing was written") from None
                finally:
                    progress_display.finish(display)
                members = [Member(e.path, e.mode, e.kind, dest / e.path, e.sha256, e.size) for e in entries]
                compressed.append(compress(cache, group.name, members, level, log=log, frame_size=frame_size))
    finally:
        data.close()
    return compressed

"""The build's output set, every name of it spelled here: the executable NAME, its parts NAME.part001, ... beside
it when it is split, NAME.sha256, the `sha256sum -c` file that lists those (parts first, the executable last), and
the side files: the SBOM (NAME.spdx.json or NAME.cdx.json, the same bytes as the one inside the bundle) and the
provenance (NAME.intoto.json, docs/sbom.md). make, split, copy, repack and pull write it; check_output, inspect
and copy read it."""

import base64
import json
import os
import re
from pathlib import Path

from payload import fs
from payload.errors import IntegrityError

PART_SEPARATOR = ".part"
CHECKSUM_SUFFIX = ".sha256"
SBOM_SUFFIXES = {"spdx": ".spdx.json", "cyclonedx": ".cdx.json"}  # keyed as payload/rules.py SBOM_FORMATS
PROVENANCE_SUFFIX = ".intoto.json"


def checksum_path(output):
    """NAME.sha256 beside the executable NAME."""
    output = Path(output)
    return output.with_name(output.name + CHECKSUM_SUFFIX)


def part_names(name, count):
    """NAME.part001, ...: three digits at least, more when there are more parts, so that they sort in order."""
    width = max(3, len(str(count)))
    return [f"{name}{PART_SEPARATOR}{number:0{width}d}" for number in range(1, count + 1)]


def checksum_text(listed):
    """The `sha256sum -c` file for `listed`, (sha256, name) pairs in order."""
    return "".join(f"{sha256}  {name}\n" for sha256, name in listed).encode("utf-8")


def read_checksums(output):
    """{name: sha256} from NAME.sha256 (a `*name` of binary mode read as `name`); {} when there is none."""
    try:
        lines = checksum_path(output).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    pairs = (line.split(None, 1) for line in lines)
    return {name.lstrip("*"): sha256 for sha256, name in (p for p in pairs if len(p) == 2)}


def write_checksum(output, sha256):
    """NAME.sha256 of an unsplit executable, written atomically."""
    fs.write_atomic(str(checksum_path(output)), checksum_text([(sha256, Path(output).name)]).decode())


def stale_parts(directory, name, keep=()):
    """Parts of an earlier split of `name` in `directory` that are not in `keep`."""
    pattern = re.compile(re.escape(name + PART_SEPARATOR) + r"[0-9]{3,}")
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if pattern.fullmatch(n) and n not in keep)


def remove_stale_parts(directory, name, keep=()):
    for leftover in stale_parts(directory, name, keep):
        fs.safe_unlink(os.path.join(str(directory), leftover))


def sbom_path(output, fmt):
    """NAME.spdx.json or NAME.cdx.json beside the executable NAME: the SBOM in format `fmt`."""
    output = Path(output)
    return output.with_name(output.name + SBOM_SUFFIXES[fmt])


def provenance_path(output):
    """NAME.intoto.json beside the executable NAME."""
    output = Path(output)
    return output.with_name(output.name + PROVENANCE_SUFFIX)


def side_paths(output):
    """Every side file NAME may have, whether it is there or not: the SBOM in each format, then the provenance."""
    return [sbom_path(output, fmt) for fmt in SBOM_SUFFIXES] + [provenance_path(output)]


def side_files(bundle, index):
    """[(path, sha256)] of the side files beside `bundle` (its content index: `index`), each checked to belong to
    it: the SBOM must be the bytes of the one inside (whose sha256 the signed index records), the provenance must
    name that SBOM among its byproducts. One that does not is an IntegrityError: it is never carried on."""
    from payload.sbom import sbom_entry

    entry = sbom_entry(index)
    found = []
    for path in side_paths(bundle):
        if not path.is_file():
            continue
        sha256 = _belonging(path, entry)
        if sha256 is None:
            raise IntegrityError(
                f"{path} does not belong to {bundle}: {_what_inside(entry, path)}; it is damaged or left by "
                "another build: make the bundle again, or remove the file"
            )
        found.append((path, sha256))
    return found


def remove_foreign_side_files(output, index):
    """`bundler pull` over an output: side files there that do not belong to the bundle now written are removed."""
    from payload.sbom import sbom_entry

    entry = sbom_entry(index)
    for path in side_paths(output):
        if path.is_file() and _belonging(path, entry) is None:
            fs.safe_unlink(str(path))


def _belonging(path, entry):
    """The sha256 of the side file at `path` when it belongs to the bundle whose SBOM entry is `entry`, else None."""
    import hashlib

    data = path.read_bytes()
    if entry is None:
        return None
    if path.name.endswith(PROVENANCE_SUFFIX):
        belongs = entry.sha256 in byproduct_digests(data)
    else:
        belongs = hashlib.sha256(data).hexdigest() == entry.sha256
    return hashlib.sha256(data).hexdigest() if belongs else None


def _what_inside(entry, path):
    if entry is None:
        return "the bundle holds no SBOM"
    if path.name.endswith(PROVENANCE_SUFFIX):
        return "it does not name the SBOM inside the bundle"
    return f"the SBOM inside is {entry.path} with sha256 {entry.sha256}"


def byproduct_digests(data):
    """The sha256 of each byproduct a provenance (the bytes of a DSSE envelope of an in-toto statement) names;
    empty when it cannot be read as one."""
    try:
        envelope = json.loads(data)
        statement = json.loads(base64.b64decode(envelope["payload"], validate=True))
        byproducts = statement["predicate"]["runDetails"].get("byproducts") or []
        return {b["digest"]["sha256"] for b in byproducts if isinstance(b, dict)}
    except (ValueError, KeyError, TypeError, AttributeError):
        return set()


def carry_side_files(carried, bundle, output):
    """`bundler split -o` and `repack -o`: the side files of `bundle` (`carried`, from side_files(), checked
    before the command wrote anything) copied beside `output` under its name, each written atomically; a side file
    of `output` that `bundle` lacks is removed (it was left by another build). Nothing to do in place."""
    import hashlib

    if os.path.abspath(bundle) == os.path.abspath(output):
        return [path for path, _ in carried]
    output = Path(output)
    written = []
    for path, sha256 in carried:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise IntegrityError(f"{path} changed while being carried; do not change it during the command")
        target = output.with_name(output.name + path.name[len(Path(bundle).name) :])
        fs.write_atomic(str(target), data)
        written.append(target)
    remove_stale_side_files(output, keep=written)
    return written


def remove_dead_temps(output):
    """Temp files of the output set of `output` (the executable, its parts, NAME.sha256, the side files) that a
    writer killed half way left beside it (payload/fs.py temp names carry their writer's PID); returns them."""
    output = Path(output)
    names = [output.name, checksum_path(output).name] + [p.name for p in side_paths(output)]
    prefixes = ["." + name + fs.TEMP_MARK for name in names] + ["." + output.name + PART_SEPARATOR]
    return [found for prefix in prefixes for found in fs.remove_dead_temps(str(output.parent), prefix=prefix)]


def remove_stale_side_files(output, keep):
    """Side files of an earlier build of `output` that this one does not write (an SBOM of the other format)."""
    for path in side_paths(output):
        if path not in keep:
            fs.safe_unlink(str(path))

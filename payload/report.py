"""What a bundle holds and whether it holds: shared by `bundler inspect/verify` and the stub's
--bundle-info/--bundle-verify."""

import json

from payload.errors import IntegrityError
from payload.groups import extract_group
from payload.outside import check_outside
from payload.signing import describe_signature, load_public_key, verify_report
from payload.sizes import size_text


def describe(payload, as_json=False):
    index = payload.index
    if as_json:
        doc = index.to_json()
        doc["encoding"] = index.table_json()  # how it is packed: groups, frames, parts (not signed)
        doc["bundle_id"] = payload.bundle_id
        doc["signed"] = bool(payload.signature)
        doc["signature"] = describe_signature(payload)
        return json.dumps(doc, indent=2, sort_keys=True)
    lines = [
        f"name:       {index.name}",
        f"about:      {index.description or '(no description)'}",
        f"version:    {index.version}",
        f"variant:    {index.variant}",
        f"arch:       {index.arch}",
        f"bundle id:  {payload.bundle_id}",
        f"built by:   bundler {index.bundler_version}",
        "entrypoint: {}".format(" ".join(index.entrypoint)),
        f"stub:       sha256 {index.stub_sha256} (bootloader, ELF headers, PyInstaller archive)",
        f"files:      {len(index.files())}, {size_text(index.installed_size)} installed, "
        f"{size_text(index.payload_size)} stored in {len(index.groups)} group(s)",
        f"signed:     {describe_signature(payload)}",
    ]
    for group in index.groups:
        sizes = " + ".join(f"{f.size / 1e6:.1f}" for f in group.frames)
        again = [f for f in group.frames if f.level is not None]
        lines.append(
            f"group:      {group.name}: {size_text(group.size)} as {size_text(group.csize)} in "
            f"{len(group.frames)} frame(s){'' if len(group.frames) == 1 else f' of {sizes} MB'}"
            + _reencoded(group, again)
        )
    if index.min_glibc:
        lines.append(f"glibc:      {index.min_glibc} or newer ({index.min_glibc_file or 'the stub'} needs it)")
    if index.update_repository:
        lines.append(f"updates:    {index.update_repository} (--bundle-update)")
    if index.update_policy:
        settings = ", ".join(
            f"{key} = {' '.join(value) if isinstance(value, list) else value}"
            for key, value in index.update_policy.items()
        )
        lines.append(f"after an update: {settings} (the rest at their defaults; docs/fleet.md, Probation)")
    if index.parts:
        lines.append(
            f"parts:      {len(index.parts)} beside the executable, {index.parts[0].name} ... {index.parts[-1].name} "
            f"(largest {size_text(max(p.size for p in index.parts))})"
        )
    for image in index.images:
        where = (
            f"embedded, {size_text(image.size)} of {image.layers} layers before compression"
            if image.embedded
            else "pulled at run time"
        )
        lines.append(f"image:      {image.name} {image.ref}@{image.digest} ({where})")
    return "\n".join(lines)


def _reencoded(group, frames):
    """What the line of a group says of its frames a device encoded again after a delta update."""
    if not frames:
        return ""
    levels = ", ".join(str(level) for level in sorted({f.level for f in frames}))
    which = "" if len(group.frames) == 1 else f" {len(frames)} of its frames"
    return f"; re-encoded{which} on this device at zstd level {levels} (a delta update)"


def verify_all(payload, f):
    """Re-hash every group and entry; report every failing group in one IntegrityError."""
    index = payload.index
    failures = []
    data = payload.open_data(f)
    try:
        with data.verifying():  # a split bundle's every part is hashed too
            for group in index.groups:
                try:
                    extract_group(data, payload.data_offset, group, index.entries_of(group.name))
                except IntegrityError as exc:
                    failures.append(str(exc))
            if failures:
                raise IntegrityError(" | ".join(failures))
    except IntegrityError as exc:
        # A damaged part is named by the parts' own check ("PATH: part ..."), in place of what its groups said.
        raise IntegrityError(str(exc) if str(exc).startswith(payload.path) else f"{payload.path}: {exc}") from None
    parts = f", {len(index.parts)} parts" if index.parts else ""
    return (
        f"{payload.path}: ok, {len(index.entries)} entries in {len(index.groups)} group(s) of {len(index.frames())} "
        f"frame(s){parts} verified, bundle id {payload.bundle_id}"
    )


def verify_payload(payload, f, key_path, key_option):
    """The signature (against the public key at `key_path` when given), the bytes outside the payload section,
    then every blob re-hashed. `key_option` names the caller's public-key option in the advice."""
    signature = verify_report(payload, load_public_key(str(key_path)) if key_path else None, key_option=key_option)
    check_outside(payload, f)
    outside = f"stub: ok, sha256 {payload.index.stub_sha256}"
    return verify_all(payload, f) + "\n" + outside + "\n" + signature

"""--bundle-status [--json]: what a device holds and what its updates did, read without the install lock (every
record it reads is written atomically).

Disk use counts each inode once: versions share unchanged files as hard links (stub/shared.py), so a version's
`bytes` are those of every file it holds, `own_bytes` those no other version holds, and `total_bytes` the whole
root, each inode counted once.
"""

import os
import time

from payload import fs
from payload.rules import update_setting
from stub import probation
from stub.root import CURRENT, KEPT_DIR, PINS_DIR, PREVIOUS, REFUSED_DIR, Installation, version_dirs


def _inodes(top):
    """{(dev, ino): bytes on disk} of every file and directory under `top`."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            found[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return found


def _when(record):
    """(ISO time, detail) of a `TIME<TAB>detail` log record, or (None, None)."""
    stamp, _, detail = (record or "").partition("\t")
    if not stamp.isdigit():
        return None, None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(stamp))), detail


def collect(root):
    """Everything --bundle-status shows, as a JSON-ready dict."""
    root = os.path.abspath(root)
    current, previous = fs.link_target(os.path.join(root, CURRENT)), fs.link_target(os.path.join(root, PREVIOUS))
    try:
        installed = version_dirs(root, installed_only=True)
    except OSError:  # nothing installed there yet: the report says so
        installed = []
    inodes = {bundle_id: _inodes(os.path.join(root, bundle_id)) for bundle_id in installed}
    versions = []
    for bundle_id, mine in inodes.items():
        others = set().union(*(set(v) for k, v in inodes.items() if k != bundle_id))
        doc = Installation(root, bundle_id).index_doc()
        versions.append(
            {
                "bundle_id": bundle_id,
                "version": doc.get("version"),
                "role": "current" if bundle_id == current else "previous" if bundle_id == previous else None,
                "bytes": sum(mine.values()),
                "own_bytes": sum(size for key, size in mine.items() if key not in others),
                "kept_executable": os.path.isfile(os.path.join(root, KEPT_DIR, bundle_id)),
            }
        )
    every = {}
    for mine in inodes.values():
        every.update(mine)
    record = probation.read_probation(root)
    on_probation = None
    if record is not None and record["bundle"] == current:
        policy = probation.installed_policy(root, current)
        on_probation = {
            "bundle_id": current,
            "starts": int(record["starts"]),
            "probation_starts": update_setting(policy, "probation_starts"),
            "health": update_setting(policy, "health"),
            "since": _when(record.get("since", "") + "\t")[0],
            "previous": record.get("previous"),
        }
    log = probation.read_log(root)
    events = {}
    for event in ("update", "rollback", "good", "health"):
        when, detail = _when(log.get(event))
        events[event] = None if when is None else {"time": when, "detail": detail}
    refused = []
    try:
        for bundle_id in sorted(os.listdir(os.path.join(root, REFUSED_DIR))):
            reason = probation.refused(root, bundle_id)
            if reason is not None:
                refused.append({"bundle_id": bundle_id, "reason": reason})
    except OSError:
        pass
    try:
        pins = sorted(n for n in os.listdir(os.path.join(root, PINS_DIR)) if n.endswith(".pub"))
    except OSError:
        pins = []
    current_policy = probation.installed_policy(root, current) if current else None
    return {
        "root": root,
        "current": current,
        "previous": previous,
        "versions": versions,
        "total_bytes": sum(every.values()),
        "probation": on_probation,
        "rolls_back_on_its_own": probation.armed(current_policy),
        "last_update": events["update"],
        "last_rollback": events["rollback"],
        "last_mark_good": events["good"],
        "last_health_check": events["health"],
        "rolled_back": refused,
        "pins": pins,
    }


def status(root, name, as_json):
    """The report, as JSON or as lines."""
    from payload.sizes import size_text

    report = collect(root)
    report["name"] = name
    if as_json:
        import json

        return json.dumps(report, indent=2, sort_keys=True)
    lines = [f"{name} in {report['root']}"]
    for v in report["versions"]:
        role = f" ({v['role']})" if v["role"] else ""
        lines.append(
            f"  {v['version'] or 'unknown version'} {v['bundle_id'][:12]}{role}: {size_text(v['bytes'])} on disk, "
            f"{size_text(v['own_bytes'])} not shared with another version"
        )
    if not report["versions"]:
        lines.append("  nothing installed")
    lines.append(f"  disk: {size_text(report['total_bytes'])} for all versions (hard-linked files counted once)")
    p = report["probation"]
    if p is not None:
        check = f"health check {' '.join(p['health'])}" if p["health"] else "no health check: mark it good"
        lines.append(
            f"  probation: {p['bundle_id'][:12]} has made {p['starts']} of {p['probation_starts']} starts without a "
            f"mark ({check}); then the next start rolls back to {(p['previous'] or '')[:12]}"
        )
    elif report["current"] and not report["rolls_back_on_its_own"]:
        lines.append(
            "  probation: none; this version sets no [update] health nor probation_starts, so nothing rolls back on "
            "its own"
        )
    else:
        lines.append("  probation: none")
    for key, label in (
        ("last_update", "last update"),
        ("last_rollback", "last rollback"),
        ("last_mark_good", "last mark good"),
        ("last_health_check", "last health check"),
    ):
        event = report[key]
        lines.append(f"  {label}: {event['time'] + ' ' + event['detail'] if event else 'none'}")
    for r in report["rolled_back"]:
        lines.append(f"  refused until --bundle-force: {r['bundle_id'][:12]} ({r['reason']})")
    lines.append(f"  pinned keys: {', '.join(report['pins']) or 'none'}")
    return "\n".join(lines)

"""Probation after an update, and the automatic rollback (docs/fleet.md, "Probation").

After `--bundle-update`, the new version is current *on probation* when its manifest asks for it (`[update]
health`, or `probation_starts` set): <root>/.probation names it, with the version it replaced and the starts it
has made. Each start of it counts itself (an atomic rewrite, under the install lock) before the runtime runs; a
start that finds `probation_starts` starts made without a mark rolls back instead (stub/rollback.py), records why,
and runs the previous version. `--bundle-mark-good`, or the health command exiting 0 in a detached process, ends
the probation. When nothing is on probation a start pays two failed stats (stub/main.py).

The bookkeeping is ordered so that kill -9 at any point leaves a version that starts: the count is one atomic
rename; a rollback first records the refusal, then swaps `current` and `previous`, then puts back the old bundle
file, then removes <root>/.probation; a start that finds the swap done but the file not yet back finishes it.
"""

import os
import sys
import time

from payload import fs
from stub.root import CURRENT, HEALTH_LOCK, HEALTH_LOG, LOCK, PROBATION, REFUSED_DIR, UPDATE_LOG, Installation

HEALTH_WORKER = "--bundle-health-worker"
FORCE = "--bundle-force"


# -- the records ------------------------------------------------------------------------------------------------


def _read_fields(path):
    """{key: value} of a file of `key<TAB>value` lines; {} when it is absent or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return {}
    fields = {}
    for line in text.splitlines():
        key, tab, value = line.partition("\t")
        if tab:
            fields[key] = value
    return fields


def _write_fields(path, fields):
    text = "".join(f"{key}\t{value}\n" for key, value in sorted(fields.items()))
    fs.write_atomic(path, text.encode("utf-8"), mode=0o644)


def _clean(text):
    """A value that fits on one record line."""
    return " ".join(str(text).split())


def read_probation(root):
    """The probation record ({"bundle", "previous", "starts", "since"}), or None when nothing is on probation."""
    fields = _read_fields(os.path.join(root, PROBATION))
    if len(fields.get("bundle", "")) != 64 or not fields.get("starts", "").isdigit():
        return None
    return fields


def read_log(root):
    """The last update, rollback, mark and health check: {event: "TIME<TAB>detail"} as `--bundle-status` shows
    them."""
    return _read_fields(os.path.join(root, UPDATE_LOG))


def log_event(root, event, detail):
    """Record the last `event` (update, rollback, good, health) with the time; the caller holds the install lock."""
    fields = read_log(root)
    fields[event] = f"{int(time.time())}\t{_clean(detail)}"
    _write_fields(os.path.join(root, UPDATE_LOG), fields)


def refused(root, bundle_id):
    """Why an update to `bundle_id` is refused (it was rolled back on its own), or None."""
    fields = _read_fields(os.path.join(root, REFUSED_DIR, bundle_id))
    return fields.get("reason") if fields else None


def installed_policy(root, bundle_id):
    """The `update_policy` the installed version `bundle_id` records in its index ({} when none or unreadable)."""
    policy = Installation(root, bundle_id).index_doc().get("update_policy")
    return policy if isinstance(policy, dict) else {}


def armed(policy):
    """Whether a version with this [update] policy is put on probation: it has a health command, or says how
    many starts it gets (a fleet that marks good from the runtime or a unit). Otherwise nothing rolls back."""
    return bool(policy) and ("health" in policy or "probation_starts" in policy)


def summary(policy):
    """What an update adds to its summary line about the probation it starts."""
    from payload.rules import update_setting

    if not armed(policy):
        return ""
    check = " or its health check passes" if "health" in policy else ""
    return (
        f", on probation: it rolls back on its own after {update_setting(policy, 'probation_starts')} starts unless "
        f"marked good (--bundle-mark-good){check}"
    )


# -- after an update --------------------------------------------------------------------------------------------


def begin(root, new_id, previous_id, index, summary):
    """Called under the install lock once an update made `new_id` current: put it on probation (when its policy
    asks) and record the update."""
    path = os.path.join(root, PROBATION)
    if armed(index.update_policy) and previous_id and previous_id != new_id:
        fields = {"bundle": new_id, "previous": previous_id, "starts": "0", "since": str(int(time.time()))}
        _write_fields(path, fields)
    else:
        fs.safe_unlink(path)  # an older probation ends with the version it was about
    fs.safe_unlink(os.path.join(root, REFUSED_DIR, new_id))  # installed again: forced, so no longer refused
    log_event(root, "update", summary)


# -- at a start -------------------------------------------------------------------------------------------------


def at_start(inst, index, executable, argv, held, runtime_args, umask):
    """Before the runtime of `inst` runs, when <root>/.probation exists or this version was rolled back on its own
    (the caller looked: a stat or two). Counts this start when it is on probation, or rolls back when its starts
    are spent: then this process becomes the previous version's bundle file (or its installed entrypoint) and does
    not return. A start of a version rolled back on its own, not current, runs the current version instead, so a
    supervisor restarting a file an update wrote elsewhere (--bundle-update-output) does not bring it back."""
    from stub import locking

    lock = locking.exclusive(os.path.join(inst.root, LOCK))
    try:
        record = read_probation(inst.root)
        current = fs.link_target(os.path.join(inst.root, CURRENT))
        if record is None or record["bundle"] != inst.bundle_id:
            reason = refused(inst.root, inst.bundle_id)
            if reason is None or current is None or current == inst.bundle_id:
                return
            rollback_to = None
        elif current != inst.bundle_id:
            if refused(inst.root, inst.bundle_id) is None:
                return  # rolled back by hand: the probation waits for this version to be current again
            rollback_to = current  # a rollback stopped after the swap: finish it
        else:
            limit = _setting(index, "probation_starts")
            starts = int(record["starts"])
            if starts < limit:
                record["starts"] = str(starts + 1)
                _write_fields(os.path.join(inst.root, PROBATION), record)
                rollback_to = None
            else:
                rollback_to = record["previous"]
                why = _reason(inst.root, starts)
                _refuse(inst.root, inst.bundle_id, index.version, why)
                log_event(
                    inst.root, "rollback", f"{index.version} ({inst.bundle_id[:12]}) -> {rollback_to[:12]}: {why}"
                )
    finally:
        os.close(lock)
    if record is None or record["bundle"] != inst.bundle_id:
        sys.stderr.write(
            f"{index.name}: {index.version} was rolled back on this device ({reason}); running the current version "
            f"instead (--bundle-update --bundle-force installs it again)\n"
        )
        _exec_installed(inst.root, current, runtime_args, held, umask)
    if rollback_to is None:
        if _setting(index, "health"):
            start_health_check(inst, executable)
        return
    _roll_back(inst, index, executable, argv, held, runtime_args, umask)


def _setting(index, key):
    from payload.rules import update_setting

    return update_setting(index.update_policy, key)


def _reason(root, starts):
    last = read_log(root).get("health", "")
    health = last.partition("\t")[2]
    if health and not health.startswith("passed"):
        return f"{starts} starts without a mark; last health check: {health}"
    return f"{starts} starts without a mark (--bundle-mark-good or the health check)"


def _refuse(root, bundle_id, version, why):
    directory = os.path.join(root, REFUSED_DIR)
    fs.safe_mkdir(directory)
    _write_fields(
        os.path.join(directory, bundle_id), {"version": version, "time": str(int(time.time())), "reason": why}
    )


def _roll_back(inst, index, executable, argv, held, runtime_args, umask):
    """Make `previous` current (stub/rollback.py, which also puts the old bundle file back in place of
    `executable` and ends the probation), then run that file with this start's arguments."""
    from payload.errors import HostError
    from payload.layout import open_payload
    from stub import launch, rollback
    from stub.pulls import self_command

    # Everything this process needs from here on is imported now: the rollback puts another file where this
    # one's archive was, and a frozen stub reads modules it has not imported yet from that file.
    try:
        summary = rollback.rollback(inst.root, index.name, executable, inst.bundle_id, only_from=inst.bundle_id)
    except HostError as exc:
        # A device that cannot go back is better running the version it has than not running at all.
        sys.stderr.write(f"{index.name}: {index.version} made no mark on probation, but {exc}; running it again\n")
        return
    sys.stderr.write(f"{index.name}: {index.version} was on probation and made no mark: {summary}\n")
    with open(executable, "rb") as f:
        still_new = open_payload(executable, f).bundle_id == inst.bundle_id
    if still_new:  # written with --bundle-update-output: the old file is elsewhere; its version is installed
        _exec_installed(inst.root, fs.link_target(os.path.join(inst.root, CURRENT)), runtime_args, held, umask)
    os.close(held)  # the version left is no longer in use
    sys.stdout.flush()
    sys.stderr.flush()
    os.umask(umask)  # the file run again takes the umask it finds as the one it was started with
    command = self_command(executable) + list(argv)
    try:
        os.execve(command[0], command, launch.clean_environment(os.environ))
    except OSError as exc:
        raise HostError(f"rolled back, but cannot run {executable}: {exc.strerror}; start it again") from None


class _Identity:
    """What launch.environment needs of an index, from an installed version's record."""

    def __init__(self, doc):
        self.name, self.version, self.variant, self.arch = (doc.get(k) for k in ("name", "version", "variant", "arch"))


def _exec_installed(root, bundle_id, runtime_args, held, umask):
    """Become the installed entrypoint of version `bundle_id` of `root` (installed and verified when it was made
    current), holding its shared lock instead of `held`."""
    from payload.errors import HostError
    from stub import launch, locking

    other = Installation(root, bundle_id)
    doc = other.index_doc()
    if not isinstance(doc.get("entrypoint"), list) or not other.is_installed():
        raise HostError(f"the current version {bundle_id[:12]} in {root} is not installed; start its bundle file")
    locking.hold_shared(other.version_lock())
    os.close(held)
    launch.prepare_data(other)
    argv = launch.command(doc["entrypoint"], other, runtime_args)
    launch.exec_entrypoint(argv, launch.environment(os.environ, other, _Identity(doc)), umask)


# -- marking good -------------------------------------------------------------------------------------------------


def mark_good(root, how, bundle_id=None):
    """End the probation of the current version (of `bundle_id` only, when given); returns what it did."""
    from stub import locking

    root = os.path.abspath(root)
    if not os.path.exists(os.path.join(root, PROBATION)):
        return f"{root}: nothing is on probation"
    lock = locking.exclusive(os.path.join(root, LOCK))
    try:
        record = read_probation(root)
        current = fs.link_target(os.path.join(root, CURRENT))
        if record is None or record["bundle"] != current or (bundle_id and bundle_id != current):
            return f"{root}: nothing is on probation"
        # Recorded first: a reader never sees the probation over with no mark to say how.
        log_event(root, "good", f"{current[:12]} after {record['starts']} start(s): {how}")
        fs.safe_unlink(os.path.join(root, PROBATION))
        fs.fsync_dir(root)
    finally:
        os.close(lock)
    from payload.rules import update_setting
    from stub import gc

    # Retention: versions beyond [update] keep go once the one they were kept for has proved itself.
    keep = update_setting(installed_policy(root, current), "keep")
    removed = gc.collect(root, None, keep).removed
    gone = f"; removed {len(removed)} older version(s) beyond keep = {keep}" if removed else ""
    return f"{root}: {current[:12]} marked good ({how}){gone}"


# -- the health check -------------------------------------------------------------------------------------------


def start_health_check(inst, executable):
    """Launch the detached health checker (this bundle again, HEALTH_WORKER) unless one runs for this root."""
    from stub import locking, pulls

    lock = locking.try_exclusive(os.path.join(inst.root, HEALTH_LOCK))
    if lock is None:
        return
    os.close(lock)
    from stub.launch import clean_environment

    argv = pulls.self_command(executable) + [HEALTH_WORKER, "--bundle-dir", inst.root]
    pulls.spawn_detached(argv, clean_environment(os.environ), os.path.join(inst.root, HEALTH_LOG))


def health_worker(payload, root):
    """HEALTH_WORKER: after `health_delay` seconds, run the version's health command (at most `health_timeout`
    seconds); exit 0 marks the version good, anything else is recorded for --bundle-status."""
    import subprocess

    from stub import launch, locking

    index = payload.index
    inst = Installation(root, payload.bundle_id)
    health = _setting(index, "health")
    lock = locking.try_exclusive(os.path.join(inst.root, HEALTH_LOCK))
    if lock is None or not health:
        return 0
    time.sleep(_setting(index, "health_delay"))
    if not _on_probation(inst):
        return 0
    argv = launch.command(health, inst, [])
    timeout = _setting(index, "health_timeout")
    _say(f"running {' '.join(argv)} (at most {timeout:g} s)")
    try:
        code = subprocess.run(
            argv, env=launch.environment(os.environ, inst, index), stdin=subprocess.DEVNULL, timeout=timeout
        ).returncode
        result = "passed" if code == 0 else f"failed (exit {code})"
    except subprocess.TimeoutExpired:
        code, result = None, f"timed out after {timeout:g} s"
    except OSError as exc:
        code, result = None, f"could not run {health[0]}: {exc.strerror or exc}"
    _say(result)
    install_lock = locking.exclusive(os.path.join(inst.root, LOCK))
    try:
        log_event(inst.root, "health", f"{result} ({index.version}, {inst.bundle_id[:12]})")
    finally:
        os.close(install_lock)
    if code == 0:
        _say(mark_good(inst.root, "health check passed", inst.bundle_id))
    return 0


def _on_probation(inst):
    record = read_probation(inst.root)
    return record is not None and record["bundle"] == inst.bundle_id == fs.link_target(os.path.join(inst.root, CURRENT))


def _say(message):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    sys.stderr.write(f"{stamp} health[{os.getpid()}]: {message}\n")
    sys.stderr.flush()

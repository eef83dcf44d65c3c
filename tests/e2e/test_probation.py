"""Probation after `--bundle-update`: the real frozen stub, updated from Debian's docker-registry on loopback,
started again and again as a supervisor restarting it would start it.

Bundles: 1.0.0 and 1.0.4 (no [update] settings); 1.0.1 whose health check fails; 1.0.2 with `probation_starts =
2` and no health check (marked good by hand); 1.0.3 whose health check passes; 1.0.5 whose check hangs. All
signed by one key, which the device pins at its first start. Files are compared with hashlib."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from testing.faults import ENTRY, SMALL, build, ran, sha256_of, start, write_project
from testing.helpers import ROOT, bundler
from testing.registry import Registry
from tests.conftest import require_registry_tools

CHECK_FAILS = "#!/bin/sh\necho checking >&2\nexit 1\n"
CHECK_HANGS = "#!/bin/sh\nexec sleep 297.0413\n"  # an argument no other process here has
CHECK_PASSES = '#!/bin/sh\ntest -n "$BUNDLE_ID" && test -d "$BUNDLE_DATA"\n'
WAIT = 120  # seconds a detached health check may take to report, on a loaded machine (never an assertion)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    require_registry_tools()
    with Registry(tmp_path_factory.mktemp("storage")) as running:
        yield running


def _project(directory, version, update, check=None):
    files = list(SMALL)
    if check is not None:
        script = directory / "check.sh"
        directory.mkdir(parents=True, exist_ok=True)
        script.write_text(check)
        files.append(("bin/check", str(script), "launcher"))
    project = write_project(directory, files, version=version, name="fleet", entry=ENTRY + f"# {version}\n")
    with open(project / "bundle.toml", "a") as manifest:
        manifest.write(update)
    return project


@pytest.fixture(scope="module")
def built(tmp_path_factory, cache_dir, stub_path, registry):
    repo = f'\n[update]\nrepository = "{registry.host}/edge/fleet:stable"\n'
    keys = tmp_path_factory.mktemp("keys")
    bundler("keygen", "--out", keys / "release")
    found = {}
    for label, version, update, check in (
        ("old", "1.0.0", repo, None),
        ("bad", "1.0.1", repo + 'health = ["bin/check"]\nhealth_delay = 0\n', CHECK_FAILS),
        ("good", "1.0.3", repo + 'health = ["bin/check", "--quick"]\nhealth_delay = 0\n', CHECK_PASSES),
        ("counted", "1.0.2", repo + "probation_starts = 2\n", None),
        ("plain", "1.0.4", repo, None),
        ("slow", "1.0.5", repo + 'health = ["bin/check"]\nhealth_delay = 0\nhealth_timeout = 1\n', CHECK_HANGS),
    ):
        project = _project(tmp_path_factory.mktemp(label), version, update, check)
        found[label] = build(project, cache_dir, "--stub", stub_path, "--sign", keys / "release.key")
        bundler("push", found[label], f"{registry.host}/edge/fleet:{label}")
    return found


def device(tmp_path, built, label="old"):
    app = tmp_path / "dev" / "app"
    app.parent.mkdir()
    shutil.copy(built[label], app)
    root = tmp_path / "root"
    assert ran(start(app, root)) == "1.0.0"
    return app, root


def update(app, root, registry, tag, *extra):
    result = start(app, root, "--bundle-update", f"{registry.host}/edge/fleet:{tag}", *extra)
    assert result.returncode == 0, result.stderr
    return result


def status(app, root):
    result = start(app, root, "--bundle-status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_for(what, app, root):
    """Poll --bundle-status until `what(status)` holds; the report that did (the detached check runs apart)."""
    deadline = time.monotonic() + WAIT
    while True:
        report = status(app, root)
        if what(report) or time.monotonic() > deadline:
            return report
        time.sleep(0.5)


def test_a_failing_health_check_rolls_back_on_its_own_and_is_refused_again(tmp_path, built, registry):
    app, root = device(tmp_path, built)
    updated = update(app, root, registry, "bad")
    assert "on probation" in updated.stdout and "after 3 starts" in updated.stdout
    info = start(app, root, "--bundle-info").stdout
    assert "after an update: health = bin/check, health_delay = 0" in info
    report = status(app, root)
    assert report["probation"]["starts"] == 0 and report["probation"]["probation_starts"] == 3
    assert report["probation"]["health"] == ["bin/check"]
    for number in (1, 2, 3):
        assert ran(start(app, root)) == "1.0.1"  # the runtime runs while on probation
        if number == 1:  # the detached check of the first start has reported (it runs apart from the runtime)
            report = wait_for(lambda r: r["last_health_check"], app, root)
            assert report["last_health_check"]["detail"].startswith("failed (exit 1)"), report
    assert status(app, root)["probation"]["starts"] == 3
    back = start(app, root)  # the fourth start: rolls back, then runs the previous version in its place
    assert ran(back) == "1.0.0", back.stderr
    assert "was on probation and made no mark" in back.stderr
    assert sha256_of(app) == sha256_of(built["old"])  # ./app is the old file again
    report = status(app, root)
    assert report["probation"] is None and report["current"] != report["previous"]
    versions = {v["bundle_id"]: v["version"] for v in report["versions"]}
    assert versions[report["current"]] == "1.0.0" and versions[report["previous"]] == "1.0.1"
    why = report["last_rollback"]["detail"]
    assert "3 starts without a mark" in why and "failed (exit 1)" in why, why
    assert [r["bundle_id"] for r in report["rolled_back"]] == [report["previous"]]
    assert len(report["pins"]) == 1  # the release key, pinned by the first start
    assert ran(start(app, root)) == "1.0.0"  # and it stays there
    refused = start(app, root, "--bundle-update", f"{registry.host}/edge/fleet:bad")
    assert refused.returncode == 4 and "was rolled back on this device" in refused.stderr, refused.stderr
    assert "--bundle-force" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert sha256_of(app) == sha256_of(built["old"])
    check = start(app, root, "--bundle-update", f"{registry.host}/edge/fleet:bad", "--bundle-check")
    assert (
        check.returncode == 0 and "up to date" in check.stdout and "was rolled back on this device" in check.stdout
    ), check.stderr  # not an update any more
    forced = update(app, root, registry, "bad", "--bundle-force")
    assert "updated fleet 1.0.0 -> 1.0.1" in forced.stdout
    assert status(app, root)["probation"]["starts"] == 0  # on probation again, counted afresh


def test_a_health_check_that_outlives_its_timeout_is_killed_and_recorded(tmp_path, built, registry):
    app, root = device(tmp_path, built)
    update(app, root, registry, "slow")
    assert ran(start(app, root)) == "1.0.5"
    report = wait_for(lambda r: r["last_health_check"], app, root)
    assert report["last_health_check"]["detail"].startswith("timed out after 1 s"), report
    assert report["probation"]["starts"] == 1  # not marked: the starts decide
    hanging = subprocess.run(["pgrep", "-f", "sleep 297.0413"], capture_output=True, text=True).stdout.split()
    assert not hanging, hanging  # the check was killed, not left behind


def test_a_file_written_elsewhere_rolls_back_to_the_installed_previous_version_and_stays_there(
    tmp_path, built, registry
):
    """--bundle-update-output: the old file stays where it was, the new one is elsewhere, so the rollback has no
    file to put back: the start that rolls back runs the previous version's installed entrypoint, and later starts
    of the new file run the current version too (a supervisor keeps starting that file)."""
    app, root = device(tmp_path, built)
    other = tmp_path / "elsewhere" / "app"
    other.parent.mkdir()
    update(app, root, registry, "bad", "--bundle-update-output", other)
    assert sha256_of(app) == sha256_of(built["old"]) and sha256_of(other) == sha256_of(built["bad"])
    for _ in range(3):
        assert ran(start(other, root)) == "1.0.1"
    back = start(other, root)
    assert ran(back) == "1.0.0" and "was on probation and made no mark" in back.stderr, back.stderr
    again = start(other, root, "--", "an-argument")
    assert ran(again) == "1.0.0" and "was rolled back on this device" in again.stderr, again.stderr
    assert sha256_of(other) == sha256_of(built["bad"])  # nothing put in its place
    assert ran(start(app, root)) == "1.0.0"
    forced = update(app, root, registry, "bad", "--bundle-force")  # no longer refused once installed again
    assert "on probation" in forced.stdout and ran(start(app, root)) == "1.0.1"
    assert status(app, root)["rolled_back"] == []


def test_a_passing_health_check_marks_good_and_older_versions_beyond_keep_go(tmp_path, built, registry):
    app, root = device(tmp_path, built)
    update(app, root, registry, "counted")
    assert ran(start(app, root)) == "1.0.2"
    marked = start(app, root, "--bundle-mark-good")
    assert marked.returncode == 0 and "marked good (--bundle-mark-good)" in marked.stdout, marked.stderr
    assert len(status(app, root)["versions"]) == 2  # 1.0.0 and 1.0.2: nothing beyond keep = 2 yet
    update(app, root, registry, "good")
    assert len(status(app, root)["versions"]) == 3
    assert ran(start(app, root)) == "1.0.3"
    report = wait_for(lambda r: r["probation"] is None and len(r["versions"]) == 2, app, root)
    assert report["probation"] is None, report
    assert report["last_mark_good"]["detail"].endswith("health check passed"), report
    assert report["last_health_check"]["detail"].startswith("passed"), report
    # keep = 2 (the default): 1.0.3 and the 1.0.2 before it stay, 1.0.0 is gone, its directory with it.
    assert sorted(v["version"] for v in report["versions"]) == ["1.0.2", "1.0.3"]
    assert sorted(n for n in os.listdir(root) if len(n) == 64) == sorted(v["bundle_id"] for v in report["versions"])
    for _ in range(4):  # marked good: no start counts any more, nothing rolls back
        assert ran(start(app, root)) == "1.0.3"
    assert status(app, root)["last_rollback"] is None


def test_a_version_marked_by_hand_stays_and_one_without_settings_never_rolls_back(tmp_path, built, registry):
    app, root = device(tmp_path, built)
    update(app, root, registry, "counted")
    for _ in range(2):
        assert ran(start(app, root)) == "1.0.2"
    assert status(app, root)["probation"]["starts"] == 2
    marked = start(app, root, "--bundle-mark-good")
    assert "marked good" in marked.stdout  # before the third start: it stays
    for _ in range(3):
        assert ran(start(app, root)) == "1.0.2"
    again = start(app, root, "--bundle-mark-good")
    assert again.returncode == 0 and "nothing is on probation" in again.stdout
    update(app, root, registry, "plain")  # no health, no probation_starts: today's behaviour
    report = status(app, root)
    assert report["probation"] is None and report["rolls_back_on_its_own"] is False
    assert "nothing rolls back on its own" in start(app, root, "--bundle-status").stdout
    for _ in range(5):
        assert ran(start(app, root)) == "1.0.4"
    assert status(app, root)["last_rollback"] is None


def test_check_says_whether_an_update_is_available_and_fetches_nothing_else(tmp_path, built, registry):
    from testing.registry import free_port

    app, root = device(tmp_path, built)
    before = sha256_of(app)

    def check(reference):
        return start(app, root, "--bundle-update", reference, "--bundle-check")

    same = check(f"{registry.host}/edge/fleet:old")
    assert same.returncode == 0 and "fleet 1.0.0 is up to date" in same.stdout, same.stderr
    mark = len(registry.served())
    newer = check(f"{registry.host}/edge/fleet:plain")
    assert newer.returncode == 7 and "holds fleet 1.0.4" in newer.stdout, newer.stderr
    blob_gets = [r["uri"] for r in registry.served(mark) if r["method"] == "GET" and "/blobs/" in r["uri"]]
    assert len(blob_gets) == 1, blob_gets  # the config (the signed index), nothing else
    unreachable = check(f"127.0.0.1:{free_port()}/edge/fleet:plain")
    assert unreachable.returncode == 5 and len(unreachable.stderr.strip().splitlines()) == 1, unreachable.stderr
    assert sha256_of(app) == before and not (root / ".updates").exists()
    assert ran(start(app, root)) == "1.0.0"  # a check installs nothing
    update(app, root, registry, "plain")
    older = check(f"{registry.host}/edge/fleet:old")
    assert older.returncode == 0 and "up to date" in older.stdout and "holds the older fleet 1.0.0" in older.stdout, (
        older.stderr
    )
    # The update itself follows the same rule: refused (exit 4, the file untouched), then allowed by the option.
    on_plain = sha256_of(app)
    refused = start(app, root, "--bundle-update", f"{registry.host}/edge/fleet:old")
    assert refused.returncode == 4 and "holds the older fleet 1.0.0" in refused.stderr, refused.stderr
    assert "--bundle-allow-downgrade" in refused.stderr and sha256_of(app) == on_plain
    update(app, root, registry, "old", "--bundle-allow-downgrade")
    assert ran(start(app, root)) == "1.0.0"


def test_uninstall_is_refused_while_the_runtime_runs_then_removes_all_but_data_and_purge_the_rest(
    tmp_path, built, registry
):
    app, root = device(tmp_path, built)
    update(app, root, registry, "plain")  # two versions, the 1.0.0 file kept for a rollback, a pin
    (root / "data" / "state").write_text("kept")
    hold = tmp_path / "holding"
    runtime = subprocess.Popen(
        [app, "--bundle-dir", root],
        env=dict(os.environ, FAULTS_HOLD=str(hold)),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + WAIT
        while not hold.exists() and runtime.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hold.exists(), "the runtime did not start"
        refused = start(app, root, "--bundle-uninstall")
        assert refused.returncode == 4 and "runs from" in refused.stderr and "1.0.4" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        assert len(status(app, root)["versions"]) == 2  # nothing was removed
    finally:
        os.killpg(runtime.pid, signal.SIGKILL)
        runtime.wait()
    done = start(app, root, "--bundle-uninstall")
    assert done.returncode == 0, done.stderr
    assert "removed 2 version(s)" in done.stdout and "1 kept bundle file(s), 1 pinned key(s)" in done.stdout
    assert "--bundle-purge removes it" in done.stdout
    assert sorted(os.listdir(root)) == ["data"] and (root / "data" / "state").read_text() == "kept"
    purged = start(app, root, "--bundle-uninstall", "--bundle-purge")
    assert purged.returncode == 0 and "removed its data" in purged.stdout, purged.stderr
    assert not root.exists()
    assert ran(start(app, root)) == "1.0.4"  # the bundle file stays, and installs itself again


# A kill at one given step cannot be timed from outside a process: this sitecustomize, put first on the path of a
# run from the sources (the code the stub freezes), kills the process with SIGKILL just before its Nth change to
# the file system, the way a power cut or the OOM killer would.
CRASHER = """
import os, signal
_left = int(os.environ.pop("CRASH_AT", "0") or 0)
if _left:
    def _wrap(name):
        real = getattr(os, name)
        def call(*args, **kwargs):
            global _left
            _left -= 1
            if _left == 0:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        setattr(os, name, call)
    for _name in ("replace", "rename", "unlink", "symlink", "link", "mkdir", "fsync"):
        _wrap(_name)
"""


def _copy_device(source, target):
    """A copy of a device (its root and its file), hard links and symlinks as they are."""
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)
    return target / "dev" / "app", target / "root"


@pytest.mark.parametrize("starts_before", [0, 3])
def test_a_kill_at_any_step_of_the_bookkeeping_leaves_a_version_that_starts(tmp_path, built, registry, starts_before):
    """starts_before 0: a counting start is killed; 3: the start that rolls back is killed. After each kill the
    real stub is started again: it runs a version at once, and the device ends where an uncut start leaves it."""
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    app, root = device(snapshot, built)
    update(app, root, registry, "counted" if starts_before == 0 else "bad")
    for _ in range(starts_before):
        ran(start(app, root))
    if starts_before:  # no detached check may write in the snapshot while it is copied
        assert wait_for(lambda r: r["last_health_check"], app, root)["last_health_check"]
    sitedir = tmp_path / "site"
    sitedir.mkdir()
    (sitedir / "sitecustomize.py").write_text(CRASHER)
    expected = "1.0.2" if starts_before == 0 else "1.0.0"
    crashes = 0
    for step in range(1, 200):
        app, root = _copy_device(snapshot, tmp_path / f"trial{step}")
        env = dict(
            os.environ,
            CRASH_AT=str(step),
            BUNDLE_EXECUTABLE=str(app),
            PYTHONPATH=f"{sitedir}{os.pathsep}{ROOT}",
        )
        cut = subprocess.run(
            [sys.executable, "-m", "stub", "--bundle-dir", str(root)], env=env, capture_output=True, text=True
        )
        if cut.returncode != -9:
            assert ran(cut) == expected  # past the last step: the start completed uncut
            break
        crashes += 1
        after = start(app, root)  # the real frozen stub, as a supervisor restarts it
        assert ran(after) == expected, (step, after.stderr)
        if starts_before == 3:  # rolled back (or the rollback finished) by the next start
            assert sha256_of(app) == sha256_of(built["old"]), step
            assert ran(start(app, root)) == "1.0.0", step
        else:
            assert status(app, root)["probation"]["starts"] in (1, 2), step
        shutil.rmtree(tmp_path / f"trial{step}")
    assert crashes >= 3  # the premise: the bookkeeping has steps to cut

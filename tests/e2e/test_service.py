"""--bundle-install for service managers, with the real frozen stub: it installs and verifies, runs nothing, and
prints a command that runs the installed entrypoint as the main process itself (no bootloader parent)."""

import os
import subprocess

import pytest

from testing.faults import SMALL, build, expected_files, install_problems, start, write_project

# Says who it is, which process it is, and what its environment holds.
ENTRY = """#!/bin/sh
if [ -n "$FAULTS_MARK" ]; then echo ran >> "$FAULTS_MARK"; fi
echo "RAN $BUNDLE_VERSION $BUNDLE_ID"
echo "PID $$"
echo "ROOT $BUNDLE_ROOT"
echo "DATA $BUNDLE_DATA"
for a in "$@"; do printf 'ARG=[%s]\\n' "$a"; done
env | grep -c '^_PYI\\|_MEI' || true
"""


@pytest.fixture(scope="module")
def service(tmp_path_factory, cache_dir, stub_path):
    project = write_project(tmp_path_factory.mktemp("service"), SMALL, entry=ENTRY, name="svc")
    return build(project, cache_dir, "--stub", stub_path), expected_files(project, SMALL)


def test_bundle_install_runs_nothing_and_prints_the_command_a_unit_runs(service, tmp_path):
    exe, expected = service
    root = tmp_path / "root with space"
    mark = tmp_path / "ran"
    result = start(exe, root, "--bundle-install", "serve", "two words", env={"FAULTS_MARK": str(mark)})
    assert result.returncode == 0, result.stderr
    assert not mark.exists() and "RAN" not in result.stdout  # nothing ran
    assert install_problems(root, expected) == []
    command = result.stdout.strip()
    assert len(result.stdout.splitlines()) == 1 and command.startswith("/usr/bin/env 'BUNDLE_ROOT=")

    # Run the printed command as a service manager would: exec'd, so the runtime is the main process.
    clean = {"PATH": os.environ["PATH"], "FAULTS_MARK": str(mark)}
    proc = subprocess.Popen(["/bin/sh", "-c", "exec " + command], env=clean, stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and mark.exists()
    lines = out.splitlines()
    installed = os.path.realpath(root / "current")
    assert lines[0] == f"RAN 1.0.0 {os.path.basename(installed)}"
    assert lines[1] == f"PID {proc.pid}"  # no bootloader, no stub in between
    assert lines[2] == f"ROOT {installed}" and lines[3] == f"DATA {root / 'data'}"
    assert (root / "data").is_dir()
    assert lines[4:] == [
        "ARG=[--root]",
        f"ARG=[{installed}]",
        "ARG=[serve]",
        "ARG=[two words]",
        "0",
    ]  # the last: no PyInstaller variable in its environment


def test_bundle_install_refuses_an_installed_version_that_was_damaged(service, tmp_path):
    exe, _ = service
    root = tmp_path / "root"
    assert start(exe, root, "--bundle-install").returncode == 0
    with open(root / "current" / "bin" / "crun", "ab") as f:
        f.write(b"x")
    damaged = start(exe, root, "--bundle-install")
    assert damaged.returncode == 3 and "bin/crun (edited)" in damaged.stderr and "--bundle-repair" in damaged.stderr
    assert damaged.stdout == ""
    assert start(exe, root, "--bundle-repair").returncode == 0
    assert start(exe, root, "--bundle-install").returncode == 0

"""docs/systemd.md's units, exactly as the page gives them, pass `systemd-analyze verify` (Debian's systemd
package: the command works where systemd is not PID 1). The bundle's paths are pointed at a real executable, since
verify checks that each command exists. The page gives three demo.service units (the bundle file, the installed
entrypoint, and the bundle file for unattended updates): each is verified with the units it goes with."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "systemd.md"
UNITS = ("demo.service", "demo-update.service", "demo-update.timer")


def units_in_doc():
    """[(file name, text)] of every ```ini block that starts with `# /etc/systemd/system/NAME`, in page order."""
    found = []
    for block in re.findall(r"```ini\n(.*?)```", DOC.read_text(), re.S):
        first, _, body = block.partition("\n")
        if first.startswith("# /etc/systemd/system/"):
            found.append((first.rsplit("/", 1)[1], body))
    return found


def verify(tmp_path, units):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing: install Debian's systemd package (scripts/setup lists it)")
    tmp_path.mkdir(exist_ok=True)
    app = tmp_path / "app"
    app.write_text("#!/bin/sh\nexit 0\n")
    app.chmod(0o755)
    paths = []
    for name, text in units.items():
        path = tmp_path / name
        path.write_text(re.sub(r"/opt/demo/app|/var/lib/demo/4f1c…e2/bin/demo", str(app), text))
        paths.append(str(path))
    return subprocess.run([tool, "verify", *paths], capture_output=True, text=True, cwd=tmp_path)


def test_the_units_of_the_page_pass_systemd_analyze_verify(tmp_path):
    units = units_in_doc()
    assert [name for name, _ in units] == ["demo.service", "demo.service", *UNITS], units
    for n, (name, text) in enumerate(units[:2]):
        alone = verify(tmp_path / f"alone-{n}", {name: text})
        assert alone.returncode == 0 and not alone.stderr.strip(), alone.stderr
    updated = verify(tmp_path / "updated", dict(units[2:]))
    assert updated.returncode == 0 and not updated.stderr.strip(), updated.stderr


def test_verify_refuses_a_broken_unit(tmp_path):
    """The check can fail: a misspelt key and a timer without its service are reported."""
    units = dict(units_in_doc()[2:])
    broken = {
        "demo-update.service": units["demo-update.service"].replace("Type=oneshot", "Typ=oneshot"),
        "demo-update.timer": units["demo-update.timer"],
    }
    result = verify(tmp_path, broken)
    assert "Typ" in result.stderr, result.stderr

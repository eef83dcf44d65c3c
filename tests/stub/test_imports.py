"""The run side imports only the standard library, zstandard and (lazily) requests, and runs on Python 3.9."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_THIRD_PARTY = {"zstandard", "payload", "stub"}
FORBIDDEN = {"bundler", "click", "cryptography", "PyInstaller", "requests", "urllib3", "tomli_w"}

PROBE = """
import json, sys
before = set(sys.modules)
import stub.main, stub.install, stub.launch, stub.options, stub.locking
import payload.layout, payload.blobs, payload.index, payload.elf, payload.report
import payload.oci.registry, payload.oci.archive, payload.oci.reference
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _third_party(names):
    stdlib = set(sys.stdlib_module_names)
    return {n.split(".")[0] for n in names} - stdlib - {"_distutils_hack"}


def test_stub_imports_nothing_from_the_build_side():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, stdout=subprocess.PIPE, check=True, text=True).stdout
    loaded = json.loads(out)
    third_party = _third_party(loaded)
    assert not third_party & FORBIDDEN, "run side imported %s" % sorted(third_party & FORBIDDEN)
    assert third_party <= ALLOWED_THIRD_PARTY, "run side imported %s" % sorted(third_party - ALLOWED_THIRD_PARTY)


def test_run_side_is_python_39_syntax():
    vermin = shutil.which("vermin") or os.path.join(os.path.dirname(sys.executable), "vermin")
    result = subprocess.run([vermin, "-t=3.9-", "--no-tips", "--violations", "--no-parse-comments",
                             "stub", "payload"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout


def _python39():
    candidates = sorted(Path("/root/.pyenv/versions").glob("3.9*/bin/python3.9")) + [Path("/usr/bin/python3.9")]
    return next((str(p) for p in candidates if p.exists()), "")


PY39 = _python39()


@pytest.mark.skipif(not os.path.exists(PY39), reason="no Python 3.9 interpreter on this machine; vermin still checks syntax")
def test_run_side_compiles_on_python_39():
    files = [str(p) for d in ("stub", "payload") for p in (ROOT / d).rglob("*.py")]
    code = "import ast, sys\nfor f in sys.argv[1:]:\n    ast.parse(open(f).read(), f)\n"
    subprocess.run([PY39, "-c", code] + files, check=True)

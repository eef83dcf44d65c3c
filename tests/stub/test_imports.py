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

RUN_SIDE_MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts)
    for package in ("stub", "payload")
    for path in (ROOT / package).rglob("*.py")
    if path.name not in ("__init__.py", "__main__.py")
)
PROBE = """
import importlib, json, sys
before = set(sys.modules)
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(set(sys.modules) - before)))
"""

# Left out of the frozen stub by bundler/stubs/build.py EXCLUDES: nothing on the run side may need them.
EXCLUDED_FROM_STUB = {"inspect", "cryptography", "click"}


def _third_party(names):
    stdlib = set(sys.stdlib_module_names)
    return {n.split(".")[0] for n in names} - stdlib - {"_distutils_hack"}


def test_stub_imports_nothing_from_the_build_side():
    assert "stub.root" in RUN_SIDE_MODULES and "payload.oci.artifact" in RUN_SIDE_MODULES  # the glob finds them all
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *RUN_SIDE_MODULES], cwd=ROOT, stdout=subprocess.PIPE, check=True, text=True
    ).stdout
    loaded = json.loads(out)
    third_party = _third_party(loaded)
    assert not third_party & FORBIDDEN, f"run side imported {sorted(third_party & FORBIDDEN)}"
    assert third_party <= ALLOWED_THIRD_PARTY, f"run side imported {sorted(third_party - ALLOWED_THIRD_PARTY)}"


def test_run_side_needs_nothing_the_stub_leaves_out():
    from bundler.stubs.build import EXCLUDES

    assert EXCLUDED_FROM_STUB <= set(EXCLUDES)
    # The pull path too: requests is imported only there.
    probe = PROBE.replace("print(", "import payload.http\npayload.http.requests_module()\nprint(")
    out = subprocess.run(
        [sys.executable, "-c", probe, *RUN_SIDE_MODULES], cwd=ROOT, stdout=subprocess.PIPE, check=True, text=True
    ).stdout
    loaded = {name.split(".")[0] for name in json.loads(out)}
    assert not loaded & EXCLUDED_FROM_STUB, sorted(loaded & EXCLUDED_FROM_STUB)


def test_installed_start_imports_neither_zstandard_nor_requests():
    """The fast path (an installed bundle) must not pay for the decoder or the network stack."""
    code = (
        "import sys\nimport stub.main, stub.install, stub.launch, stub.locking, stub.images, payload.layout\n"
        "print(sorted(m for m in ('zstandard', 'requests', 'payload.groups') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, check=True, text=True).stdout
    assert out.strip() == "[]"


def test_a_first_install_starts_decoding_before_hashlib_is_imported(plain_stub, tmp_path):
    """The decoder starts right after the index is read: nothing on its way may import hashlib, whose OpenSSL the
    frozen stub unpacks first (tests/stub/test_main.py checks that it decodes during the checks)."""
    from testing.bundles import make_bundle

    exe, _ = make_bundle(tmp_path / "build", plain_stub)
    code = (
        "import sys\nfrom payload.layout import open_payload\nfrom stub import install\n"
        "f = open(sys.argv[1], 'rb')\n"
        "started = install.start_decompressing(open_payload(sys.argv[1], f), sys.argv[1])\n"
        "print(started is not None, 'hashlib' in sys.modules, '_hashlib' in sys.modules)\nstarted.cancel()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(exe)], cwd=ROOT, stdout=subprocess.PIPE, check=True, text=True
    ).stdout
    assert out.split() == ["True", "False", "False"]


def test_run_side_is_python_39_syntax():
    vermin = shutil.which("vermin") or os.path.join(os.path.dirname(sys.executable), "vermin")
    result = subprocess.run(
        [vermin, "-t=3.9-", "--no-tips", "--violations", "--no-parse-comments", "stub", "payload"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def _python39():
    candidates = sorted(Path("/root/.pyenv/versions").glob("3.9*/bin/python3.9")) + [Path("/usr/bin/python3.9")]
    return next((str(p) for p in candidates if p.exists()), "")


PY39 = _python39()
WITHOUT_PY39 = "no Python 3.9 interpreter on this machine; vermin still checks syntax"


@pytest.mark.skipif(not os.path.exists(PY39), reason=WITHOUT_PY39)
def test_run_side_compiles_on_python_39():
    files = [str(p) for d in ("stub", "payload") for p in (ROOT / d).rglob("*.py")]
    code = "import ast, sys\nfor f in sys.argv[1:]:\n    ast.parse(open(f).read(), f)\n"
    subprocess.run([PY39, "-c", code] + files, check=True)


INSTALLED_START = """
import os, sys
def execve(path, argv, env):
    print(" ".join(sorted(sys.modules)))
    sys.stdout.flush()
    os._exit(0)
os.execve = execve
from stub.main import main
main(["demo", "--bundle-dir", sys.argv[1]])
"""


def test_an_installed_start_loads_neither_openssl_nor_the_decoder(tmp_path, plain_stub):
    """Up to the exec of the entrypoint, an installed start hashes only its index (payload/small_sha.py): loading
    OpenSSL's libcrypto for that cost about 100 ms under qemu. Nor does it import zstandard or requests."""
    from testing.bundles import make_bundle

    exe, _ = make_bundle(tmp_path / "build", plain_stub)
    env = dict(os.environ, BUNDLE_EXECUTABLE=str(exe), PYTHONPATH=str(ROOT))
    root = tmp_path / "root"
    subprocess.run(
        [sys.executable, "-c", INSTALLED_START, str(root)], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
    )  # the first start installs
    assert (root / "current").is_symlink()
    loaded = subprocess.run(
        [sys.executable, "-c", INSTALLED_START, str(root)],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout.split()
    assert "stub.launch" in loaded  # it did get as far as the exec
    assert not {"_hashlib", "hashlib", "zstandard", "requests", "payload.groups"} & set(loaded), sorted(
        {"_hashlib", "hashlib", "zstandard", "requests", "payload.groups"} & set(loaded)
    )

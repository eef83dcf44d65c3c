"""Helpers for tests that build and run real bundles."""

import os
import pty
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bundler(*args, cwd=None, env=None, check=True, inherit_env=True):
    """Run the real `bundler` CLI in a subprocess (in `env` alone when not `inherit_env`)."""
    full_env = dict(os.environ if inherit_env else {}, **(env or {}))
    full_env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "bundler", *map(str, args)], cwd=cwd, env=full_env, capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise AssertionError(f"bundler {args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def run(cmd, env=None, **kw):
    """Run a built bundle (or any command) and capture its output."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([str(c) for c in cmd], env=full_env, capture_output=True, text=True, **kw)


def section_span(path, name):
    """(offset, size) of an ELF section as `readelf` (binutils, not our code) reports it."""
    out = subprocess.run(["readelf", "-S", "-W", str(path)], stdout=subprocess.PIPE, text=True, check=True).stdout
    for line in out.splitlines():
        fields = line.replace("[ ", "[").split()
        if len(fields) > 5 and fields[1] == name:
            return int(fields[4], 16), int(fields[5], 16)
    raise AssertionError(f"no section {name} in {path}")


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def run_on_a_terminal(cmd, cwd=None, env=None):
    """Run `cmd` with stderr on a real pseudo-terminal (so isatty() is the real one); returns (exit code, its
    stdout bytes, what the terminal showed)."""
    controller, terminal = pty.openpty()
    full_env = dict(os.environ, **(env or {}))
    full_env["PYTHONPATH"] = str(ROOT)
    child = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=full_env, stderr=terminal, stdout=subprocess.PIPE)
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    out = child.stdout.read()
    return child.wait(timeout=120), out, seen.decode(errors="replace")


_MEASURED = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(f'RSS_KB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def measured(cmd, env=None, timeout=300):
    """(exit code, stderr, peak RSS in KB) of `cmd` and the processes it waited for: a wrapper process runs only
    `cmd` and reads resource.getrusage(RUSAGE_CHILDREN), so nothing else this test process ran is counted."""
    result = subprocess.run(
        [sys.executable, "-c", _MEASURED, *map(str, cmd)],
        env=dict(os.environ, **{k: str(v) for k, v in (env or {}).items()}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = result.stderr.splitlines()
    if not lines or not lines[-1].startswith("RSS_KB="):
        raise AssertionError(f"the wrapper did not report: {result.stderr[-400:]}")
    return result.returncode, "\n".join(lines[:-1]), int(lines[-1].split("=")[1])


def stub_bootloader(stub, dest):
    """Write to `dest` the stub's PyInstaller bootloader (its `bootloader` section behind the launcher), found by
    the offsets `readelf -S` prints, not by the project's ELF reader; returns `dest`."""
    import re

    table = subprocess.run(["readelf", "-S", "-W", str(stub)], stdout=subprocess.PIPE, text=True, check=True).stdout
    found = re.search(r"\]\s+bootloader\s+\S+\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)", table)
    assert found, f"no bootloader section in {stub}:\n{table}"
    offset, size = int(found.group(1), 16), int(found.group(2), 16)
    with open(stub, "rb") as f:
        f.seek(offset)
        Path(dest).write_bytes(f.read(size))
    return dest

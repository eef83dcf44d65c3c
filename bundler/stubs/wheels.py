"""Python packages for a stub built in a Debian root, downloaded on the build host.

The host's pip does the downloading, so its configuration (pip.conf, PIP_* variables, find-links, file:// indexes,
the CA bundle) applies unchanged; the root installs them with `--no-index`. `pip download --platform` checks wheel
tags and Requires-Python for the target but evaluates environment markers for the host's Python, so the
dependencies are walked here, level by level, with the target's markers. Packages without wheels for the target
(PyInstaller and zstandard on armhf and riscv64) come as sdists, with their build requirements, and are built in
the root.
"""

import email.parser
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import tomllib
from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from payload.errors import HostError, NetworkError

# zstandard builds its optional cffi backend only when cffi is importable; the stub leaves that backend out,
# so cffi (and compiling it under emulation) is not needed.
_SKIPPED_BUILD_REQUIREMENTS = {"cffi"}


def marker_environment(python, machine):
    env = default_environment()
    env.update(
        python_version=python,
        python_full_version=python + ".0",
        platform_machine=machine,
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        extra="",
    )
    return env


def download(requirements, dest, python, machine, platform, from_source=(), log=print):
    """Download `requirements` and everything they need on the target into `dest`; returns the file names.

    `platform` is a pip platform tag (manylinux2014_aarch64); names in `from_source` come as sdists.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    env = marker_environment(python, machine)
    from_source = {canonicalize_name(n) for n in from_source}
    seen = set()
    pending = [Requirement(r) for r in requirements]
    while pending:
        wanted = {}
        for req in pending:
            name = canonicalize_name(req.name)
            if name not in seen and name not in wanted:
                wanted[name] = req
        seen.update(wanted)
        pending = []
        if not wanted:
            break
        before = set(dest.iterdir())
        binary = [str(_plain(r)) for n, r in wanted.items() if n not in from_source]
        source = [str(_plain(r)) for n, r in wanted.items() if n in from_source]
        abi = "cp" + python.replace(".", "")
        if binary:
            _pip(
                [
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--platform",
                    platform,
                    "--python-version",
                    python,
                    "--implementation",
                    "cp",
                    "--abi",
                    abi,
                    "--abi",
                    "abi3",
                    "--abi",
                    "none",
                    "-d",
                    str(dest),
                ]
                + binary,
                log,
            )
        if source:
            _pip(["download", "--no-deps", "--no-binary=:all:", "-d", str(dest)] + source, log)
        for path in set(dest.iterdir()) - before:
            for req in _requirements_of(path):
                if req.marker is None or req.marker.evaluate(env):
                    pending.append(req)
    return sorted(p.name for p in dest.iterdir())


def _plain(req):
    """The requirement without its marker (already evaluated for the target) and extras."""
    return Requirement(req.name + str(req.specifier))


def _pip(args, log):
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"] + args
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stdout.splitlines() if line.strip() and "is ignored" not in line]
        raise NetworkError(
            "pip download for the stub failed: {}; check the network or the host's pip "
            "configuration (pip config list)".format(" | ".join(lines[-3:]))
        )


def _requirements_of(path):
    """Requires-Dist of a wheel or sdist, plus an sdist's build-system requirements (it is built without
    isolation in the root)."""
    try:
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as whl:
                meta = next(n for n in whl.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
                return _parse_requires(whl.read(meta).decode("utf-8"))
        with tarfile.open(path) as sdist:
            top = sdist.getnames()[0].split("/")[0]
            info = sdist.extractfile(top + "/PKG-INFO").read().decode("utf-8")
            try:
                project = tomllib.loads(sdist.extractfile(top + "/pyproject.toml").read().decode("utf-8"))
            except KeyError:
                project = {}
        build = [Requirement(r) for r in project.get("build-system", {}).get("requires", ["setuptools", "wheel"])]
        build = [r for r in build if canonicalize_name(r.name) not in _SKIPPED_BUILD_REQUIREMENTS]
        return _parse_requires(info) + build + [Requirement("wheel")]
    except (
        OSError,
        KeyError,
        StopIteration,
        zipfile.BadZipFile,
        tarfile.TarError,
        InvalidRequirement,
        tomllib.TOMLDecodeError,
    ) as exc:
        raise HostError(f"cannot read the metadata of {path} ({exc}); delete it from the cache and retry") from None


def _parse_requires(text):
    message = email.parser.Parser().parsestr(text, headersonly=True)
    return [Requirement(r) for r in message.get_all("Requires-Dist") or []]

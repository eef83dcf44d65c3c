"""Package URLs (purl) for a file's source, where the source says which package it is: a GitHub release, a
Debian package (a pool URL, or a local file a dpkg package installed), a PyPI distribution."""

import os
import re
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from packageurl import PackageURL

_GITHUB_RELEASE = re.compile(r"^/([^/]+)/([^/]+)/releases/download/([^/]+)/[^/]+$")
_DEB_FILE = re.compile(r"^([a-z0-9][a-z0-9+.-]+)_([^_/]+)_([a-z0-9-]+)\.deb$")
# A wheel or sdist name (PEP 427, PEP 625): NAME-VERSION-... or NAME-VERSION.tar.gz
_PYPI_FILE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._]*?)-([0-9][^-]*?)(?:-[^/]*\.whl|\.tar\.gz|\.zip)$")
PYPI_HOSTS = ("files.pythonhosted.org", "pypi.org", "pypi.python.org")


@dataclass(frozen=True)
class Package:
    """What a source is, when it is a package: its purl, and the license its package declares (Debian only)."""

    purl: str
    name: str
    version: str | None
    license: str | None = None


def for_url(url):
    """The package a download URL names, or None."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    path = urllib.parse.unquote(parts.path)
    name = path.rsplit("/", 1)[-1]
    if host == "github.com":
        match = _GITHUB_RELEASE.match(path)
        if match:
            owner, repo, tag = match.groups()
            return Package(str(PackageURL("github", owner.lower(), repo.lower(), tag)), f"{owner}/{repo}", tag)
    if "/pool/" in path:
        match = _DEB_FILE.match(name)
        if match:
            return _deb(*match.groups())
    if host in PYPI_HOSTS:
        match = _PYPI_FILE.match(name)
        if match:
            project = re.sub(r"[-_.]+", "-", match.group(1)).lower()  # PEP 503 normalised, as purl wants
            return Package(str(PackageURL("pypi", None, project, match.group(2))), project, match.group(2))
    return None


def _deb(package, version, arch, license=None):
    purl = PackageURL("deb", "debian", package, version, {"arch": arch})
    return Package(str(purl), package, version, license)


def for_local_file(path, dpkg_root="/"):
    """The Debian package that installed `path` on this host (dpkg's database) when the file still holds what the
    package shipped (its md5sums line), with the license its copyright file gives; else None."""
    path = Path(path)
    candidates = [str(path)]
    real = os.path.realpath(path)
    if real != str(path):
        candidates.append(real)
    for candidate in candidates:
        owner = _dpkg_owner(candidate)
        if owner and _as_shipped(dpkg_root, owner, candidate, real):
            break
    else:
        return None
    shown = _dpkg_query(["-W", "-f", "${Version}\t${Architecture}", owner])
    if not shown or "\t" not in shown:
        return None
    version, arch = shown.split("\t", 1)
    from bundler.sbom.licenses import debian_copyright_license

    copyright_file = Path(dpkg_root) / "usr/share/doc" / owner.split(":")[0] / "copyright"
    try:
        license = debian_copyright_license(copyright_file.read_text(errors="replace"))
    except OSError:
        license = None
    return _deb(owner.split(":")[0], version, arch, license)


def _as_shipped(dpkg_root, owner, listed, real):
    """Whether `real` has the md5 that package `owner` lists for `listed` (an edited copy is not the package)."""
    import hashlib

    info = Path(dpkg_root) / "var/lib/dpkg/info"
    for name in (owner, owner.split(":")[0] + ":" + _dpkg_arch()):
        try:
            lines = (info / f"{name}.md5sums").read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            md5, _, member = line.partition("  ")
            if "/" + member == listed:
                with open(real, "rb") as f:
                    return hashlib.file_digest(f, "md5").hexdigest() == md5
    return False


def _dpkg_arch():
    found = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True)
    return found.stdout.strip()


def _dpkg_owner(path):
    found = _dpkg_query(["-S", path])
    if not found:
        return None
    first = found.splitlines()[0]
    packages, _, owned = first.rpartition(": ")
    if owned != path or "," in packages or packages.startswith("diversion"):
        return None
    return packages.strip()


def _dpkg_query(args):
    try:
        done = subprocess.run(["dpkg-query", *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None

"""What the stub is made of, for the SBOM: the Python, PyInstaller bootloader, OpenSSL and Python packages it
carries (read from the stub's own PyInstaller archive, so only what is really in it), with the versions of the
environment it was built in: a portable stub's Debian root (its dpkg database and venv, kept in the cache), or
this host for the host stub; and the launcher at its front (our own code), the musl linked into it and the zig that
compiled it. A prebuilt stub (`--stub PATH`) gives what its archive shows, without versions."""

import json
import platform
import re
import ssl
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from packageurl import PackageURL

# The Python distributions a stub may carry, by the top-level module that shows it is in the stub's archive.
_DISTRIBUTIONS = {
    "zstandard": "zstandard",
    "requests": "requests",
    "urllib3": "urllib3",
    "idna": "idna",
    "certifi": "certifi",
    "charset_normalizer": "charset-normalizer",
}
RUNTIME, BUILD_ROOT = "runtime", "build-root"  # in the stub, or a package of the root it was built in
BUILD_TOOL = "build-tool"  # what built a part of the stub on the build host: zig, for the launcher
LAUNCHER = "bundler-launcher"  # stub/launcher.c, our own code, at the front of every stub
RECORD_SUFFIX = ".components.json"  # beside a stub in the cache: what it is made of, written when it is built


@dataclass(frozen=True)
class Component:
    name: str
    version: str | None
    purl: str | None
    role: str = RUNTIME
    license: str | None = None  # an SPDX expression, where it is known


def _archive_names(stub):
    """(top-level names in the PyInstaller archive, top-level module names in its PYZ); empty for a stub that is not
    a PyInstaller one-file program (a stand-in)."""
    try:
        from PyInstaller.archive.readers import CArchiveReader

        reader = CArchiveReader(str(stub))
        names = set(reader.toc)
        modules = set()
        if "PYZ.pyz" in names:
            modules = {n.split(".")[0] for n in reader.open_embedded_archive("PYZ.pyz").toc}
    except Exception:  # any archive PyInstaller cannot read is a stub we cannot look into
        return set(), set()
    return names, modules


def _python_minor(names):
    for name in names:
        match = re.fullmatch(r"libpython(\d+\.\d+)\.so(\.[0-9.]+)?", name)
        if match:
            return match.group(1)
    return None


def _upstream(debian_version):
    """'3.9.2-1' -> '3.9.2', '1.1.1w-0+deb11u1' -> '1.1.1w', '1:2.3-4' -> '2.3'."""
    return debian_version.split(":", 1)[-1].rsplit("-", 1)[0]


def dpkg_packages(root):
    """{name: (version, architecture)} of the installed packages in the dpkg database under `root`."""
    try:
        text = (Path(root) / "var/lib/dpkg/status").read_text(errors="replace")
    except OSError:
        return {}
    found = {}
    for paragraph in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in paragraph.splitlines() if ": " in line and line[0] != " ")
        if fields.get("Package") and fields.get("Version") and "installed" in fields.get("Status", ""):
            found[fields["Package"]] = (fields["Version"], fields.get("Architecture", "all"))
    return found


def _venv_versions(root):
    """{normalised distribution name: version} of the venvs the root's stub builds use."""
    found = {}
    for dist_info in sorted(Path(root).glob("opt/bundler-stub-*/lib/python*/site-packages/*.dist-info")):
        name, _, version = dist_info.name[: -len(".dist-info")].partition("-")
        found[name.lower().replace("_", "-")] = version
    return found


def _deb_purl(name, version, arch):
    return str(PackageURL("deb", "debian", name, version, {"arch": arch}))


def _pypi(name, version):
    return Component(name, version, str(PackageURL("pypi", None, name, version)) if version else None)


def _launcher(stub, kind):
    """The launcher at the front of the stub, the musl linked into it (MIT) and, for a stub built here, the zig
    that compiled it; nothing for a stub without a launcher (one built before it)."""
    from payload.elf import find_section
    from payload.errors import BundleError
    from payload.layout import BOOTLOADER

    try:
        with open(stub, "rb") as f:
            if find_section(f, BOOTLOADER) is None:
                return []
    except (OSError, BundleError):
        return []
    if kind not in ("portable", "host"):
        return [Component(LAUNCHER, None, None), Component("musl", None, None, license="MIT")]
    from bundler import __version__
    from bundler.stubs import launcher

    musl, zig = launcher.musl_version(), launcher.zig_version()
    return [
        Component(LAUNCHER, __version__, None),
        Component("musl", musl, str(PackageURL("generic", None, "musl", musl)) if musl else None, license="MIT"),
        Component("ziglang", zig, str(PackageURL("pypi", None, "ziglang", zig)), BUILD_TOOL),
    ]


def components(stub, kind, root=None):
    """The stub's components. `kind`: "portable" (built in the Debian `root`), "host" or "prebuilt"."""
    names, modules = _archive_names(stub)
    if not names:
        return []
    present = [
        dist
        for module, dist in _DISTRIBUTIONS.items()
        if module in modules or module in {n.split("/")[0] for n in names}
    ]
    minor = _python_minor(names)
    found = []
    if kind == "portable" and root is not None and Path(root).is_dir():
        debs = dpkg_packages(root)
        venv = _venv_versions(root)
        python_deb = f"libpython{minor}" if f"libpython{minor}" in debs else None
        ssl_deb = next((n for n in ("libssl3t64", "libssl3", "libssl1.1") if n in debs), None)
        for label, deb in (("python", python_deb), ("openssl", ssl_deb)):
            if deb:
                version, arch = debs[deb]
                found.append(Component(label, _upstream(version), _deb_purl(deb, version, arch)))
        found.append(_pypi("pyinstaller", venv.get("pyinstaller")))
        found += [_pypi(dist, venv.get(dist)) for dist in present]
        found += _launcher(stub, kind)
        claimed = {python_deb, ssl_deb}
        found += [
            Component(name, version, _deb_purl(name, version, arch), BUILD_ROOT)
            for name, (version, arch) in sorted(debs.items())
            if name not in claimed
        ]
        return found
    if kind == "host":
        openssl = re.match(r"OpenSSL (\S+)", ssl.OPENSSL_VERSION)
        found.append(
            Component(
                "python",
                platform.python_version(),
                str(PackageURL("generic", None, "cpython", platform.python_version())),
            )
        )
        if openssl:
            found.append(
                Component("openssl", openssl.group(1), str(PackageURL("generic", None, "openssl", openssl.group(1))))
            )
        found.append(_pypi("pyinstaller", _host_version("pyinstaller")))
        found += [_pypi(dist, _host_version(dist)) for dist in present]
        return found + _launcher(stub, kind)
    # A prebuilt stub: what its archive shows, without versions we cannot know.
    if minor:
        found.append(Component("python", minor, None))
    found.append(Component("pyinstaller", None, None))
    found += [Component(dist, None, None) for dist in present]
    return found + _launcher(stub, kind)


def _host_version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def record(stub, kind, root=None):
    """Write the stub's components beside it (STUB.components.json), so that `make --stub PATH` with a stub
    `bundler stub` built knows them too, after the root it was built in is gone."""
    from payload import fs

    found = components(stub, kind, root)
    doc = {"kind": kind, "components": [asdict(c) for c in found]}
    fs.write_atomic(Path(str(stub) + RECORD_SUFFIX), json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return kind, found


def describe(stub, kind, root=None):
    """(kind, components) of the stub: what its build recorded when there is a record, else what can be found now."""
    try:
        doc = json.loads(Path(str(stub) + RECORD_SUFFIX).read_text())
        found = [Component(**c) for c in doc["components"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    else:
        if not any(c.name == LAUNCHER for c in found):  # recorded by a build that did not list the launcher yet
            found += _launcher(stub, doc["kind"])
        return doc["kind"], found
    return kind, components(stub, kind, root)

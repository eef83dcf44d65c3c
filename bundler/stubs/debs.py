"""Single Debian binary packages of any release and architecture (bookworm armhf `libc6`, arm64 `busybox-static`),
fetched from the Debian mirror, verified and unpacked; no debootstrap, no apt.

The chain is the archive's own, as apt checks it: `dists/RELEASE/InRelease` against the Debian archive keyring
(gpgv), the `main` Packages index against the SHA256 the signed InRelease gives, each .deb against the SHA256
the index gives. A .deb is an `ar` archive whose `data.tar.{xz,zst,gz}` is unpacked here as it is: symlinks stay
symlinks, paths stay where the package puts them (/lib/<triplet> and /usr/lib/<triplet> in bookworm; all
under /usr in trixie, whose /lib and /bin links come from base-files).

The unpacked packages are cached per release, architecture, package list and the versions chosen; a later call
for the same packages takes the cached entry without asking the mirror (to take newer versions, remove
CACHE/debs).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import posixpath
import shutil
import stat
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from bundler.build import download, unpack
from bundler.stubs.debian import MIRROR_ENV, debian_mirror, locked
from payload import fs
from payload.errors import HostError, IntegrityError, UsageError, write_error
from payload.fs import CHUNK

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")  # the one debootstrap checks with
COMPONENT = "main"
INDEXES = ("Packages.xz", "Packages.gz", "Packages")  # the first one the InRelease lists is taken
_COMPLETE = ".bundler-debs-complete"
_RECORD = "fetched.json"
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789+.-"
AR_MAGIC = b"!<arch>\n"
AR_HEADER = 60


@dataclass(frozen=True)
class Fetched:
    root: Path  # the merged data trees of all packages (usr/lib/..., lib/...); read-only use
    versions: dict  # {package: Debian version}
    sources: dict  # {package: (url, sha256 of the .deb)}


def fetch(cache, release, debian_arch, packages, mirror=None, offline=False, log=print) -> Fetched:
    """The packages `packages` of Debian `release` for `debian_arch`, unpacked into one tree (cached)."""
    names = _check_names(release, debian_arch, packages)
    top = cache.dir("debs")
    prefix = "{}-{}-{}-".format(release, debian_arch, _digest(" ".join(names)))
    found = _cached(top, prefix)
    if found is not None:
        return found
    if offline or download.is_offline():
        raise HostError(
            f"Debian {release} {debian_arch} packages {', '.join(names)} are not in the cache {top}: run the same "
            "bundler command without --offline on a host that reaches the Debian mirror, with this cache directory"
        )
    with locked(top / (prefix.rstrip("-") + ".lock"), log, "another bundler fetching these packages"):
        found = _cached(top, prefix)
        if found is not None:
            return found
        fs.remove_dead_temps(top, "." + prefix)  # the work dirs of fetches that were killed
        base = debian_mirror(mirror)
        log(f"fetching Debian {release} {debian_arch} packages {', '.join(names)} from {base}")
        release_fields, hashes, in_release = _release_index(cache, base, release)
        chosen = _choose(cache, base, release, debian_arch, names, release_fields, hashes, in_release)
        debs = {name: _download_deb(cache, base, release, debian_arch, chosen[name]) for name in names}
        versions = {name: chosen[name]["Version"] for name in names}
        entry = top / (prefix + _digest(json.dumps(versions, sort_keys=True)))
        record = {
            "release": release,
            "arch": debian_arch,
            "versions": versions,
            "sources": {name: [debs[name][0], chosen[name]["SHA256"].lower()] for name in names},
        }
        try:
            fs.safe_rmtree(entry)  # a leftover without its marker (the marker is written inside, before the rename)
            with fs.atomic_directory(entry) as work:
                root = Path(work) / "root"
                root.mkdir()
                for name in names:
                    log(f"  unpacking {name} {versions[name]}")
                    unpack_deb(debs[name][1], root, debs[name][0])
                (Path(work) / _RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
                (Path(work) / _COMPLETE).write_text("")
        except OSError as exc:
            raise write_error(
                exc,
                f"no space left in {top} for the Debian packages; free space in the cache",
                lambda reason: f"cannot write the Debian packages into {top}: {reason}",
            ) from None
    return _read(entry)


def _check_names(release, debian_arch, packages):
    if isinstance(packages, str):
        packages = [packages]
    for what, value in [("release", release), ("architecture", debian_arch)] + [("package", p) for p in packages]:
        if not isinstance(value, str) or not value or not value[0].isalnum() or value.strip(_NAME_CHARS):
            raise UsageError(f"{value!r} is not a Debian {what} name: use lower-case letters, digits and '+.-'")
    if not packages:
        raise UsageError("no Debian packages named: name at least one")
    return sorted(set(packages))


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _cached(top, prefix):
    """The newest complete entry for these packages, or None."""
    entries = [
        top / name
        for name in os.listdir(top)
        if name.startswith(prefix) and fs.TEMP_MARK not in name and (top / name / _COMPLETE).is_file()
    ]
    if not entries:
        return None
    return _read(max(entries, key=lambda entry: (entry / _COMPLETE).stat().st_mtime))


def _read(entry):
    record = json.loads((entry / _RECORD).read_text())
    return Fetched(
        entry / "root", dict(record["versions"]), {name: tuple(src) for name, src in record["sources"].items()}
    )


# The signed release file


def _release_index(cache, base, release):
    """(fields, {path: (sha256, size)}, url) of the release's InRelease, once its signature has been checked."""
    url = f"{base}/dists/{release}/InRelease"
    text = verified_text(download.fetch(url, cache=cache), url, release)
    fields, hashes = {}, {}
    key = None
    for line in text.splitlines():
        if line[:1].isspace():
            if key == "SHA256":
                parts = line.split()
                if len(parts) == 3 and parts[1].isdigit():
                    hashes[parts[2]] = (parts[0].lower(), int(parts[1]))
            continue
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    if release not in (fields.get("Codename"), fields.get("Suite")):
        raise IntegrityError(
            f"{url} is signed for Debian {fields.get('Codename') or fields.get('Suite') or '?'}, not {release}: the "
            f"mirror serves the wrong release there; use another mirror (--mirror URL or {MIRROR_ENV})"
        )
    until = fields.get("Valid-Until")
    if until and _timestamp(until) is not None and _timestamp(until) < time.time():
        raise IntegrityError(
            f"{url} was valid until {until} only: the mirror serves an outdated copy; use another mirror "
            f"(--mirror URL or {MIRROR_ENV})"
        )
    return fields, hashes, url


def _timestamp(text):
    try:
        return email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def verified_text(path, url, release, keyring=KEYRING):
    """The text an InRelease file signs, once gpgv has found a good signature by a key of `keyring` on it and no bad
    one. As apt does, a signature by a key the keyring lacks, or by an expired or revoked key, counts for nothing
    either way (Debian signs with several keys, and a host's keyring may lack the newest or hold an expired one)."""
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise HostError("checking the Debian archive's signature needs gpgv: apt-get install gpgv")
    if not Path(keyring).is_file():
        raise HostError(
            f"checking the Debian archive's signature needs its keyring {keyring}: apt-get install "
            "debian-archive-keyring"
        )
    done = subprocess.run(
        [gpgv, "--keyring", str(keyring), "--status-fd", "2", "--output", "-", str(path)],
        capture_output=True,
        env=dict(os.environ, LC_ALL="C"),
    )
    lines = done.stderr.decode(errors="replace").splitlines()
    status = [line.split()[1:] for line in lines if line.startswith("[GNUPG:] ") and len(line.split()) > 1]
    blocks = []
    for words in status:
        if words[0] == "NEWSIG" or not blocks:
            blocks.append(set())
        blocks[-1].add(words[0])
    bad = any("BADSIG" in block for block in blocks)
    if bad or not any({"GOODSIG", "VALIDSIG"} <= block for block in blocks):
        lacking = any("NO_PUBKEY" in block for block in blocks)
        why = "BADSIG" if bad else "no signature by a key of the keyring" if lacking else "no valid signature"
        raise IntegrityError(
            f"{url}: its signature does not check against the Debian archive keyring {keyring} ({why}); the mirror "
            f"or the connection altered it, or the keyring is older than Debian {release}: update "
            f"debian-archive-keyring or use another mirror (--mirror URL or {MIRROR_ENV})"
        )
    return done.stdout.decode("utf-8", errors="replace")


# The Packages index


def _choose(cache, base, release, debian_arch, names, fields, hashes, in_release):
    """{name: its Packages stanza (the highest version the index holds)}."""
    arches = fields.get("Architectures", "").split()
    if arches and debian_arch not in arches:
        raise UsageError(
            f"Debian {release} has no {debian_arch} packages on {base} (it has {', '.join(arches)}); name another "
            "architecture or release"
        )
    for index in INDEXES:
        path = f"{COMPONENT}/binary-{debian_arch}/{index}"
        if path in hashes:
            break
    else:
        raise UsageError(f"{in_release} lists no {COMPONENT} Packages index for {debian_arch}; name another release")
    url = f"{base}/dists/{release}/{path}"
    if fields.get("Acquire-By-Hash", "").lower() == "yes":
        # As apt does: by its hash, the index stays the one InRelease names while the mirror updates (a new index
        # under the plain name before the new InRelease is there would not match).
        url = f"{base}/dists/{release}/{posixpath.dirname(path)}/by-hash/SHA256/{hashes[path][0]}"
    blob = _fetch_pinned(cache, url, hashes[path][0], f"the SHA256 {in_release} gives")
    kind = {".xz": "xz", ".gz": "gzip"}.get(posixpath.splitext(index)[1], "tar")  # "tar": read as it is
    try:
        with open(blob, "rb") as raw, unpack.decompressed(kind, raw) as stream:
            data = stream.read()
    except unpack.CORRUPT as exc:
        raise IntegrityError(f"{url} cannot be decompressed ({exc}); remove {blob} and try again") from None
    stanzas = packages_stanzas(data, names)
    chosen = {}
    for name in names:
        found = [s for s in stanzas.get(name, []) if s.get("Architecture") in (debian_arch, "all")]
        if not found:
            raise UsageError(
                f"Debian {release} {debian_arch} has no package {name!r} in {COMPONENT} ({url}); check the name at "
                f"https://packages.debian.org/{release}/{name}"
            )
        chosen[name] = max(found, key=lambda s: version_key(s.get("Version", "")))
        for field in ("Version", "Filename", "SHA256"):
            if not chosen[name].get(field):
                raise IntegrityError(f"{url}: the entry of {name} has no {field}; use another mirror")
    return chosen


def packages_stanzas(data, names):
    """{name: [fields of each stanza for `name`]} of a Packages index (bytes): only those stanzas are decoded."""
    found = {}
    for name in names:
        marker = f"Package: {name}\n".encode()
        starts = [0] if data.startswith(marker) else []
        at = data.find(b"\n" + marker)
        while at != -1:
            starts.append(at + 1)
            at = data.find(b"\n" + marker, at + 1)
        for start in starts:
            end = data.find(b"\n\n", start)
            fields = {}
            for line in data[start : None if end == -1 else end].decode("utf-8", errors="replace").splitlines():
                if line and not line[0].isspace():
                    key, _, value = line.partition(":")
                    fields[key] = value.strip()
            found.setdefault(name, []).append(fields)
    return found


def version_key(version):
    """A sort key that orders Debian versions as dpkg does (deb-version(5)): epoch, then upstream version, then
    revision, each compared as runs of text and numbers, where '~' sorts before anything, even the end, and
    letters before other characters (1.0~rc1 < 1.0 < 1.0+b1 < 1.0.1)."""
    epoch, _, rest = version.partition(":") if ":" in version else ("0", "", version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return (int(epoch) if epoch.isdigit() else 0, _part_key(upstream), _part_key(revision))


def _part_key(part):
    key = []
    while part:
        text = ""
        while part and not part[0].isdigit():
            text, part = text + part[0], part[1:]
        digits = ""
        while part and part[0].isdigit():
            digits, part = digits + part[0], part[1:]
        key.append((tuple(_char_order(c) for c in text) + (0,), int(digits or 0)))
    return tuple(key) + (((0,), 0),)  # the end: after a '~', before any other text


def _char_order(char):
    if char == "~":
        return -1
    return ord(char) if char.isalpha() else ord(char) + 256


# The packages


def _download_deb(cache, base, release, debian_arch, stanza):
    """(url, path of the verified .deb in the cache)."""
    filename = stanza["Filename"]
    if filename.startswith("/") or ".." in filename.split("/"):
        raise IntegrityError(f"the Packages index of Debian {release} names {filename!r}; use another mirror")
    url = f"{base}/{filename}"
    return url, _fetch_pinned(
        cache, url, stanza["SHA256"], f"the SHA256 the signed Packages index of {release} {debian_arch} gives"
    )


def _fetch_pinned(cache, url, sha256, pinned_by):
    try:
        return download.fetch(url, sha256, cache=cache)
    except IntegrityError:
        raise IntegrityError(
            f"{url} does not hold {pinned_by}: the mirror is damaged or in the middle of an update, or the "
            f"connection altered it; try again later or use another mirror (--mirror URL or {MIRROR_ENV})"
        ) from None


def ar_members(f):
    """(name, offset, size) of each member of the `ar` archive open as `f` (the common format dpkg writes: an
    8-byte magic, then per member a 60-byte header and its bytes, padded to an even length)."""
    end = os.fstat(f.fileno()).st_size
    f.seek(0)
    if f.read(len(AR_MAGIC)) != AR_MAGIC:
        raise ValueError("not an ar archive")
    at = len(AR_MAGIC)
    while at < end:
        f.seek(at)
        header = f.read(AR_HEADER)
        size_field = header[48:58].strip()
        if len(header) < AR_HEADER or header[58:60] != b"`\n" or not size_field.isdigit():
            raise ValueError(f"damaged ar member header at byte {at}")
        size = int(size_field)
        if at + AR_HEADER + size > end:
            raise ValueError(f"ar member at byte {at} runs past the end of the file")
        yield header[:16].decode("ascii", errors="replace").rstrip(" ").rstrip("/"), at + AR_HEADER, size
        at += AR_HEADER + size + (size & 1)


class _Slice:
    """The bytes [offset, offset + size) of the open file `f`, as a file object a decompressor reads."""

    def __init__(self, f, offset, size):
        self.f, self.left = f, size
        f.seek(offset)

    def read(self, n=-1):
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data

    def readable(self):
        return True


def unpack_deb(path, dest, label):
    """Unpack the data tree of the .deb `path` into the directory `dest` (other packages may be there already).
    Every write is named by _write_member, so an OSError here comes from reading the package."""
    try:
        with open(path, "rb") as f:
            members = list(ar_members(f))
            if not members or members[0][0] != "debian-binary":
                raise ValueError("no debian-binary first member")
            data = [m for m in members if m[0].startswith("data.tar")]
            if not data:
                raise ValueError("no data.tar member")
            _, offset, size = data[0]
            f.seek(offset)
            kind = unpack.stream_kind(f.read(512))
            if kind is None:
                raise ValueError(f"{data[0][0]} is not a tar or a compressed tar")
            with (
                unpack.decompressed(kind, _Slice(f, offset, size)) as stream,
                tarfile.open(fileobj=stream, mode="r|") as tar,
            ):
                for info in tar:
                    _write_member(tar, info, Path(dest), label)
    except (ValueError, *unpack.CORRUPT) as exc:
        raise _damaged(label, exc) from None


def _damaged(label, exc):
    return IntegrityError(f"{label} is a damaged .deb ({exc}); remove it from the cache and try again")


def _member_path(name, label):
    """The member's path relative to the tree ('' for the top), or IntegrityError for one that leaves it."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise IntegrityError(f"{label} holds {name!r}, a path outside its tree; refused")
    return "/".join(parts)


def _parent_dir(dest, relative, label):
    """Make the directories above `relative` in `dest`, refusing to go through a symlink (which could point
    anywhere, even outside `dest`)."""
    where = dest
    for part in relative.split("/")[:-1]:
        where = where / part
        try:
            mode = os.lstat(where).st_mode
        except FileNotFoundError:
            os.mkdir(where, 0o755)
            continue
        if not stat.S_ISDIR(mode):
            raise IntegrityError(f"{label} writes {relative!r} through {where.relative_to(dest)}, not a directory")
    return where


def _write_member(tar, info, dest, label):
    relative = _member_path(info.name, label)
    if not relative:
        return
    try:
        _place(tar, info, dest, relative, label)
    except OSError as exc:
        raise write_error(
            exc,
            f"no space left unpacking {label} into {dest}; free space in the cache",
            lambda reason: f"cannot unpack {label} into {dest}: {reason}",
        ) from None


def _place(tar, info, dest, relative, label):
    _parent_dir(dest, relative, label)
    target = dest / relative
    if info.isdir():
        if not os.path.lexists(target):
            os.mkdir(target, 0o755)
        elif target.is_symlink() or not target.is_dir():
            raise IntegrityError(f"{label} holds the directory {relative!r} where another package has a file or link")
        return
    if target.is_dir() and not target.is_symlink():
        raise IntegrityError(f"{label} holds the file {relative!r} where another package has a directory")
    fs.safe_unlink(target)  # a later package replaces an earlier one's file, as dpkg with Replaces
    if info.issym():
        os.symlink(info.linkname, target)
    elif info.islnk():
        linked = _member_path(info.linkname, label)
        source = _parent_dir(dest, linked, label) / posixpath.basename(linked)
        if not os.path.lexists(source) or not stat.S_ISREG(os.lstat(source).st_mode):
            raise IntegrityError(f"{label} hard-links {relative!r} to {info.linkname!r}, not a file it holds")
        os.link(source, target)
        return
    elif info.isreg():
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with tar.extractfile(info) as source, os.fdopen(os.open(target, flags, info.mode & 0o755 | 0o200), "wb") as out:
            while True:
                try:
                    chunk = source.read(CHUNK)
                except unpack.CORRUPT as exc:
                    raise _damaged(label, exc) from None
                if not chunk:
                    break
                out.write(chunk)
        os.chmod(target, info.mode & 0o755)
    else:
        return  # device nodes and fifos: no library or static program needs one, and only root could make them
    os.utime(target, (info.mtime, info.mtime), follow_symlinks=False)

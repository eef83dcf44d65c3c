"""Single Debian packages, fetched and verified along the archive's chain (signed InRelease -> Packages -> .deb)
and unpacked as they are. The tests marked slow fetch bookworm arm64 busybox-static and libc6 from the real
mirror once (about 12 MB); the faults are then served by a local HTTP server holding those same files, one of
them damaged, as a broken mirror or a proxy in the way would."""

import hashlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from bundler.cache import Cache
from bundler.stubs import debs
from bundler.stubs.debian import debian_mirror
from payload.elf import elf_machine
from payload.errors import HostError, IntegrityError, UsageError
from testing.http_server import FileServer

RELEASE, ARCH = "bookworm", "arm64"
PACKAGES = ["libc6", "busybox-static"]
DEAD = "http://127.0.0.1:9/debian"  # nothing listens on the discard port: any request there fails


# Hand-built packages (no network)


def ar_archive(members):
    out = bytearray(debs.AR_MAGIC)
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def data_tar(entries, kind="xz"):
    """A data.tar of (type, name, value, mode): file (bytes), dir, sym (target), hard (archive name)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for kind_of, name, value, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = mode, 1_700_000_000
            if kind_of == "file":
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE}[kind_of]
            info.linkname = value or ""
            tar.addfile(info)
    data = raw.getvalue()
    if kind == "xz":
        import lzma

        return lzma.compress(data)
    if kind == "gz":
        import gzip

        return gzip.compress(data)
    return zstandard.ZstdCompressor().compress(data)


def deb(path, entries, kind="xz"):
    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", b"control"),
        (f"data.tar.{kind}", data_tar(entries, kind)),
    ]
    path.write_bytes(ar_archive(members))
    return path


LIBRARY = [
    ("dir", "./", None, 0o755),
    ("dir", "./lib/", None, 0o755),
    ("dir", "./lib/x-linux-gnu/", None, 0o755),
    ("file", "./lib/x-linux-gnu/libc.so.6", b"\x7fELF library", 0o755),
    ("sym", "./lib/ld.so.1", "x-linux-gnu/libc.so.6", 0o777),
    ("sym", "./lib/outside", "/etc/passwd", 0o777),  # kept as a link, never followed
    ("hard", "./lib/x-linux-gnu/libc.so.6.hardlink", "./lib/x-linux-gnu/libc.so.6", 0o755),
    ("file", "./usr/share/doc/odd-sized", b"abc", 0o644),  # parents not listed, as some tars do
]


def test_the_ar_reader_reads_members_with_their_padding(tmp_path):
    path = tmp_path / "a.ar"
    path.write_bytes(ar_archive([("odd/", b"123"), ("even", b"12"), ("last", b"x")]))
    with open(path, "rb") as f:
        members = list(debs.ar_members(f))
        assert [(name, size) for name, _, size in members] == [("odd", 3), ("even", 2), ("last", 1)]
        f.seek(members[1][1])
        assert f.read(2) == b"12"


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"!<arch>X" + data[8:],  # not an ar archive
        lambda data: data[:-3],  # cut short: the last member runs past the end
        lambda data: data[:56] + b"NaN" + data[59:],  # a size that is no number
    ],
)
def test_the_ar_reader_refuses_a_damaged_archive(tmp_path, damage):
    path = tmp_path / "a.ar"
    path.write_bytes(damage(ar_archive([("one", b"1234"), ("two", b"5678")])))
    with open(path, "rb") as f, pytest.raises(ValueError):
        list(debs.ar_members(f))


@pytest.mark.parametrize("kind", ["xz", "gz", "zst"])
def test_a_deb_is_unpacked_as_it_is_links_kept(tmp_path, kind):
    dest = tmp_path / "root"
    dest.mkdir()
    debs.unpack_deb(deb(tmp_path / "p.deb", LIBRARY, kind), dest, "p.deb")
    lib = dest / "lib"
    assert (lib / "x-linux-gnu/libc.so.6").read_bytes() == b"\x7fELF library"
    assert os.readlink(lib / "ld.so.1") == "x-linux-gnu/libc.so.6"
    assert os.readlink(lib / "outside") == "/etc/passwd"
    assert os.stat(lib / "x-linux-gnu/libc.so.6.hardlink").st_ino == os.stat(lib / "x-linux-gnu/libc.so.6").st_ino
    assert (dest / "usr/share/doc/odd-sized").read_bytes() == b"abc"
    assert oct(os.stat(lib / "x-linux-gnu/libc.so.6").st_mode & 0o7777) == oct(0o755)
    assert os.stat(lib / "x-linux-gnu/libc.so.6").st_mtime == 1_700_000_000


@pytest.mark.parametrize(
    "evil",
    [
        [("file", "../escaped", b"x", 0o644)],
        [("file", "/tmp/escaped", b"x", 0o644)],
        [("file", "./a/../../escaped", b"x", 0o644)],
        # a link to the outside, then a file written through it
        [("sym", "./lib", "..", 0o777), ("file", "./lib/escaped", b"x", 0o644)],
        [("hard", "./lib/escaped", "../outside-file", 0o644)],
    ],
)
def test_members_that_leave_the_tree_are_refused(tmp_path, evil):
    dest = tmp_path / "deep" / "root"
    dest.mkdir(parents=True)
    (tmp_path / "deep" / "outside-file").write_text("mine")
    with pytest.raises(IntegrityError, match="evil.deb"):
        debs.unpack_deb(deb(tmp_path / "evil.deb", evil), dest, "evil.deb")
    assert not (tmp_path / "deep" / "escaped").exists() and not Path("/tmp/escaped").exists()
    assert (tmp_path / "deep" / "outside-file").read_text() == "mine"


def test_a_deb_without_its_data_tree_is_refused(tmp_path):
    path = tmp_path / "p.deb"
    path.write_bytes(ar_archive([("debian-binary", b"2.0\n"), ("control.tar.xz", b"control")]))
    with pytest.raises(IntegrityError, match="p.deb is a damaged .deb .no data.tar member"):
        debs.unpack_deb(path, tmp_path, "p.deb")


def test_only_the_stanzas_of_the_named_packages_are_read():
    index = (
        b"Package: libc6\nVersion: 2.36-9\nDescription: GNU C\n continued line: not a field\n\n"
        b"Package: libc6-dev\nVersion: 9\n\nPackage: busybox\nVersion: 1\n\n"
        b"Package: libc6\nVersion: 2.36-9+deb12u1\nArchitecture: arm64"
    )
    found = debs.packages_stanzas(index, ["libc6", "absent"])
    assert found == {
        "libc6": [
            {"Package": "libc6", "Version": "2.36-9", "Description": "GNU C"},
            {"Package": "libc6", "Version": "2.36-9+deb12u1", "Architecture": "arm64"},
        ]
    }


def test_debian_versions_sort_as_dpkg_sorts_them():
    ordered = ["1.0~rc1", "1.0", "1.0+b1", "1.0.1", "1.0.1-1~bpo1", "1.0.1-1", "1.0.1-1+deb12u1", "1.0.1-10", "1:0.1"]
    assert sorted(reversed(ordered), key=debs.version_key) == ordered


@pytest.mark.parametrize(
    "args",
    [("bookworm", "arm64", []), ("book worm", "arm64", ["libc6"]), ("bookworm", "arm64", ["../libc6"])],
)
def test_bad_names_are_usage_errors(tmp_path, args):
    with pytest.raises(UsageError) as raised:
        debs.fetch(Cache(tmp_path), *args, mirror=DEAD)
    assert raised.value.exit_code == 2


def test_offline_with_nothing_cached_says_what_to_run(tmp_path):
    with pytest.raises(HostError, match="without --offline on a host that reaches the Debian mirror") as raised:
        debs.fetch(Cache(tmp_path), RELEASE, ARCH, PACKAGES, mirror=DEAD, offline=True)
    assert raised.value.exit_code == 4 and "busybox-static, libc6" in str(raised.value)


# The signature check (a key of our own: gpg makes one in a second)


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    if shutil.which("gpg") is None or shutil.which("gpgv") is None:
        pytest.skip(reason="needs gpg and gpgv")
    home = tmp_path_factory.mktemp("gnupg")
    gpg = ["gpg", "--batch", "--homedir", str(home), "--passphrase", ""]
    subprocess.run(gpg + ["--quick-gen-key", "Test Archive <a@example.org>", "ed25519", "sign", "never"], check=True)
    keyring = home / "keyring.gpg"
    keyring.write_bytes(subprocess.run(gpg + ["--export"], check=True, capture_output=True).stdout)

    def sign(text, path):
        path.write_bytes(
            subprocess.run(gpg + ["--clearsign"], input=text.encode(), check=True, capture_output=True).stdout
        )
        return path

    sign.keyring = keyring
    return sign


def test_a_signed_release_file_gives_its_text(tmp_path, signer):
    path = signer("Codename: bookworm\nSHA256:\n abc 1 main/x\n", tmp_path / "InRelease")
    assert debs.verified_text(path, "URL", RELEASE, signer.keyring) == "Codename: bookworm\nSHA256:\n abc 1 main/x\n"


def test_an_altered_release_file_is_refused(tmp_path, signer):
    path = signer("Codename: bookworm\nSHA256:\n abc 1 main/x\n", tmp_path / "InRelease")
    path.write_text(path.read_text().replace(" abc 1", " abd 1"))
    with pytest.raises(IntegrityError, match="URL: its signature does not check .*BADSIG") as raised:
        debs.verified_text(path, "URL", RELEASE, signer.keyring)
    assert raised.value.exit_code == 3


def test_a_release_file_signed_by_another_key_is_refused(tmp_path, signer):
    path = signer("Codename: bookworm\n", tmp_path / "InRelease")
    with pytest.raises(IntegrityError, match="no signature by a key of the keyring"):
        debs.verified_text(path, "URL", RELEASE, debs.KEYRING)


def test_no_keyring_names_the_package_to_install(tmp_path):
    with pytest.raises(HostError, match="apt-get install debian-archive-keyring"):
        debs.verified_text(tmp_path / "InRelease", "URL", RELEASE, tmp_path / "none.gpg")


# The real mirror


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    cache = Cache(tmp_path_factory.mktemp("debs-cache"), notice=lambda message: None)
    return cache, debs.fetch(cache, RELEASE, ARCH, PACKAGES, log=lambda message: None)


@pytest.fixture(scope="module")
def mirror_files(fetched, tmp_path_factory):
    """The files of the real mirror the fetch used (as the cache recorded them), laid out as a mirror."""
    cache, result = fetched
    base = debian_mirror()
    root = tmp_path_factory.mktemp("mirror")
    urls = [f"{base}/dists/{RELEASE}/InRelease", base + packages_path(cache, base)]
    for url in urls + [url for url, _ in result.sources.values()]:
        target = root / url[len(base) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cache.blob_path(cache.url_sha256(url)), target)
    return root


def packages_path(cache, base):
    """Where the fetch took the Packages index from: by its hash, as the signed InRelease names it."""
    url = f"{base}/dists/{RELEASE}/InRelease"
    text = debs.verified_text(cache.blob_path(cache.url_sha256(url)), url, RELEASE)
    assert "Acquire-By-Hash: yes" in text
    index = f"main/binary-{ARCH}/Packages.xz"
    sha256 = next(line.split()[0] for line in text.splitlines() if line.endswith(" " + index) and len(line) > 90)
    return f"/dists/{RELEASE}/main/binary-{ARCH}/by-hash/SHA256/{sha256}"


@pytest.fixture
def mirror(mirror_files, tmp_path):
    root = tmp_path / "mirror"
    shutil.copytree(mirror_files, root)
    with FileServer(root) as server:
        server.root_dir = root
        yield server


def deb_path(mirror, package):
    return "/" + str(next(mirror.root_dir.glob(f"pool/main/*/*/{package}_*.deb")).relative_to(mirror.root_dir))


def entries(cache):
    return sorted(name for name in os.listdir(cache.dir("debs")) if not name.endswith(".lock"))


@pytest.mark.slow
def test_arm64_busybox_and_libc_come_verified_and_unpacked(fetched):
    cache, result = fetched
    with open(result.root / "bin/busybox", "rb") as f:
        assert elf_machine(f) == "arm64"
    assert b"/lib/ld-linux" not in (result.root / "bin/busybox").read_bytes()[:4096]  # static: no interpreter
    assert os.path.islink(result.root / "lib/ld-linux-aarch64.so.1")
    assert os.path.realpath(result.root / "lib/ld-linux-aarch64.so.1").startswith(str(result.root))
    libc = result.root / "lib/aarch64-linux-gnu/libc.so.6"
    with open(libc, "rb") as f:
        assert elf_machine(f) == "arm64"
    assert set(result.versions) == set(PACKAGES) and result.versions["libc6"].startswith("2.36-")
    for package, (url, sha256) in result.sources.items():
        assert url.endswith(f"_{ARCH}.deb") and f"/{package}_" in url
        assert hashlib.sha256(cache.blob_path(sha256).read_bytes()).hexdigest() == sha256


@pytest.mark.slow
def test_a_second_call_asks_no_mirror(fetched):
    cache, result = fetched
    assert debs.fetch(cache, RELEASE, ARCH, list(reversed(PACKAGES)), mirror=DEAD) == result
    assert debs.fetch(Cache(cache.root), RELEASE, ARCH, PACKAGES, offline=True) == result


@pytest.mark.slow
def test_the_local_mirror_serves_what_the_real_one_did(mirror, tmp_path, fetched):
    cache = Cache(tmp_path / "cache")
    result = debs.fetch(cache, RELEASE, ARCH, PACKAGES, mirror=mirror.url(""), log=lambda message: None)
    assert result.versions == fetched[1].versions
    assert result.sources["libc6"][1] == fetched[1].sources["libc6"][1]
    assert mirror.requests[deb_path(mirror, "libc6")] == 1


@pytest.mark.slow
def test_a_packages_index_that_does_not_match_the_signed_release_file_is_refused(mirror, tmp_path):
    packages = next(mirror.root_dir.glob(f"dists/{RELEASE}/main/binary-{ARCH}/by-hash/SHA256/*"))
    mirror.wrong_bytes("/" + str(packages.relative_to(mirror.root_dir)))
    cache = Cache(tmp_path / "cache")
    with pytest.raises(
        IntegrityError, match=r"by-hash/SHA256/[0-9a-f]{64} does not hold the SHA256 .*InRelease gives"
    ) as raised:
        debs.fetch(cache, RELEASE, ARCH, ["busybox-static"], mirror=mirror.url(""), log=lambda message: None)
    assert raised.value.exit_code == 3 and entries(cache) == []


@pytest.mark.slow
def test_a_damaged_deb_from_the_mirror_is_refused(mirror, tmp_path):
    mirror.wrong_bytes(deb_path(mirror, "busybox-static"))
    cache = Cache(tmp_path / "cache")
    with pytest.raises(IntegrityError, match=r"busybox-static_.*\.deb does not hold the SHA256 .*Packages index"):
        debs.fetch(cache, RELEASE, ARCH, ["busybox-static"], mirror=mirror.url(""), log=lambda message: None)
    assert entries(cache) == []


@pytest.mark.slow
def test_a_release_file_altered_on_the_way_is_refused(mirror, tmp_path):
    in_release = mirror.root_dir / "dists" / RELEASE / "InRelease"
    text = in_release.read_text()
    line = next(
        line for line in text.splitlines() if line.endswith(f"main/binary-{ARCH}/Packages.xz") and len(line) > 90
    )
    in_release.write_text(text.replace(line, " " + "0" * 64 + line[65:]))  # a forged index's hash
    with pytest.raises(IntegrityError, match="InRelease: its signature does not check .*BADSIG"):
        debs.fetch(Cache(tmp_path / "c"), RELEASE, ARCH, ["busybox-static"], mirror=mirror.url(""), log=print)


@pytest.mark.slow
def test_a_damaged_deb_in_the_cache_is_dropped_and_fetched_again(mirror, tmp_path):
    notices = []
    cache = Cache(tmp_path / "cache", notice=notices.append)
    first = debs.fetch(cache, RELEASE, ARCH, ["busybox-static"], mirror=mirror.url(""), log=lambda message: None)
    blob = cache.blob_path(first.sources["busybox-static"][1])
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as f:
        f.seek(1000)
        f.write(b"\0\0\0\0")
    shutil.rmtree(cache.dir("debs"))
    again = debs.fetch(
        Cache(cache.root, notice=notices.append), RELEASE, ARCH, ["busybox-static"], mirror=mirror.url("")
    )
    assert again.sources == first.sources and "is damaged" in notices[0]
    assert mirror.requests[deb_path(mirror, "busybox-static")] == 2


@pytest.mark.slow
def test_a_package_the_release_does_not_have_is_named(mirror, tmp_path):
    with pytest.raises(UsageError, match="Debian bookworm arm64 has no package 'no-such-package' in main"):
        debs.fetch(Cache(tmp_path / "c"), RELEASE, ARCH, ["libc6", "no-such-package"], mirror=mirror.url(""), log=print)


@pytest.mark.slow
def test_a_full_disk_while_unpacking_leaves_no_entry(mirror, tmp_path, tiny_tmpfs):
    cache = Cache(tmp_path / "cache")
    (cache.root / "debs").symlink_to(tiny_tmpfs)  # the unpacked trees on a real 1 MiB file system
    with pytest.raises(HostError, match="no space left unpacking .*_arm64.deb into .*free space") as raised:
        debs.fetch(cache, RELEASE, ARCH, PACKAGES, mirror=mirror.url(""), log=lambda message: None)
    assert raised.value.exit_code == 4
    assert [name for name in os.listdir(tiny_tmpfs) if not name.endswith(".lock")] == []


@pytest.mark.slow
def test_ctrl_c_while_unpacking_leaves_no_entry(mirror, tmp_path):
    cache = Cache(tmp_path / "cache")

    def interrupt_at_the_second_package(message):
        if "unpacking libc6" in message:  # busybox-static is in the work dir by now
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        debs.fetch(cache, RELEASE, ARCH, PACKAGES, mirror=mirror.url(""), log=interrupt_at_the_second_package)
    assert os.listdir(cache.dir("debs")) == [f"{RELEASE}-{ARCH}-{debs._digest(' '.join(sorted(PACKAGES)))}.lock"]
    again = debs.fetch(cache, RELEASE, ARCH, PACKAGES, mirror=mirror.url(""), log=lambda message: None)
    assert (again.root / "bin/busybox").is_file()

"""payload/lazylibs.py: the stub's on-demand library set, packed at build time and read on the device.
tests/e2e/test_lazy_libs.py runs it in the real frozen stub; tests/bundler/build/test_glibc.py reads it with zstd's
CLI."""

import os
import re

import pytest

from payload import lazylibs
from payload.errors import IntegrityError


@pytest.fixture
def sources(tmp_path):
    """Three files as a stub build gives them: two extension modules and a library, of unlike sizes."""
    files = {
        "python3.9/lib-dynload/_ssl.so": os.urandom(70000),
        "libssl.so.1.1": b"\x7fELF" + b"x" * 5000,
        "python3.9/lib-dynload/_ctypes.so": b"",
    }
    entries = []
    for dest, data in files.items():
        source = tmp_path / "src" / dest
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_bytes(data)
        module = os.path.basename(dest).split(".", 1)[0] if dest.endswith(".so") else None  # as a build names it
        entries.append((dest, str(source), module))
    return files, entries


def test_unpack_gives_back_every_file_with_its_module(sources, tmp_path):
    files, entries = sources
    blob = tmp_path / lazylibs.BLOB
    lazylibs.pack(entries, blob)
    unpacked = lazylibs.unpack(blob.read_bytes(), str(blob))
    assert [(dest, module) for dest, module, _ in unpacked] == [(dest, module) for dest, _, module in entries]
    assert {dest: data for dest, _, data in unpacked} == files


def test_the_module_names_come_from_the_header_alone(sources, tmp_path):
    _, entries = sources
    blob = tmp_path / lazylibs.BLOB
    lazylibs.pack(entries, blob)
    assert blob.stat().st_size > lazylibs.HEADER_MAX  # the random 70 KB do not compress
    with open(blob, "rb") as f:
        files = lazylibs.read_files(f, str(blob))
        assert f.tell() == lazylibs.HEADER_MAX  # the files' bytes were not read
    assert {module for _, _, module, _ in files} == {"_ssl", "_ctypes", None}


def test_an_import_unpacks_its_module_and_the_libraries_it_needs_only(sources, tmp_path):
    """A first install imports _hashlib: libcrypto and it, not libssl, _ssl or the rest (each file is a frame of its
    own, and only those frames are decompressed)."""
    files, entries = sources
    entries.append(("python3.9/lib-dynload/_hashlib.so", entries[2][1], "_hashlib"))
    entries.append(("libcrypto.so.1.1", entries[1][1], None))
    blob = tmp_path / lazylibs.BLOB
    lazylibs.pack(entries, blob)
    header, _ = lazylibs.read_header(blob.read_bytes(), str(blob))
    wanted = lazylibs.wanted_by(header, "_hashlib")
    assert wanted == {"python3.9/lib-dynload/_hashlib.so", "libcrypto.so.1.1"}
    assert lazylibs.wanted_by(header, "_ssl") == {"python3.9/lib-dynload/_ssl.so", "libssl.so.1.1", "libcrypto.so.1.1"}
    assert lazylibs.wanted_by(header, "_somewhere_else") == {dest for dest, _, _ in entries}  # not in NEEDS: all
    unpacked = lazylibs.unpack(blob.read_bytes(), str(blob), wanted)
    assert sorted(dest for dest, _, _ in unpacked) == sorted(wanted)
    # A flipped byte in a frame that is not wanted is not seen; in a wanted one it is.
    data = bytearray(blob.read_bytes())
    data[data.index(b"\n\n") + 2 + 100] ^= 0xFF  # inside _ssl's frame, the first: 70 KB that do not compress
    assert lazylibs.unpack(bytes(data), str(blob), wanted)
    with pytest.raises(IntegrityError, match="library set"):
        lazylibs.unpack(bytes(data), str(blob))


def test_a_header_longer_than_a_reader_reads_is_refused_at_build_time(tmp_path):
    source = tmp_path / "lib.so"
    source.write_bytes(b"")
    entries = [(f"d/{'x' * 200}/lib{i}.so", str(source), None) for i in range(400)]
    with pytest.raises(ValueError, match="header"):
        lazylibs.pack(entries, tmp_path / lazylibs.BLOB)
    assert not (tmp_path / lazylibs.BLOB).exists()


@pytest.mark.parametrize("damage", ["flip", "truncate", "magic"])
def test_a_damaged_set_is_an_integrity_error_naming_it(damage, sources, tmp_path):
    _, entries = sources
    blob = tmp_path / lazylibs.BLOB
    lazylibs.pack(entries, blob)
    data = bytearray(blob.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        del data[len(data) - 100 :]
    else:
        data[0:1] = b"B"
    where = re.escape(str(blob))
    with pytest.raises(IntegrityError, match=f"library set .*{where}|{where} is not the stub's library set"):
        lazylibs.unpack(bytes(data), str(blob))


def test_a_set_of_another_format_names_the_stub_to_build_again(sources, tmp_path):
    """A stub built by an older bundler (format 1: one frame for the whole set), given to `make --stub`."""
    _, entries = sources
    blob = tmp_path / lazylibs.BLOB
    lazylibs.pack(entries, blob)
    older = blob.read_bytes().replace(lazylibs.MAGIC, b"bundler lazy libraries 1\n", 1)
    with pytest.raises(
        IntegrityError, match=r"libraries 1'.*built by another bundler; build it again \(`bundler stub`\)"
    ):
        lazylibs.unpack(older, "old-stub")

"""stub/lazylibs.py with the real frozen stub: OpenSSL, unicodedata and ctypes are not unpacked by the bootloader at
each start, only when an import needs them. The dynamic loader's own trace (LD_DEBUG=files, inherited by the stub's
Python) says which libraries a start loads, and from where."""

import io
import os
import subprocess

from PyInstaller.archive.readers import CArchiveReader

from payload import lazylibs
from testing.bundles import make_bundle, online_bundle
from testing.loader import ON_DEMAND, initialised
from tests.conftest import require_registry_tools


def _loaded(exe, root, tmpdir, *args, expect=7):
    env = dict(os.environ, LD_DEBUG="files", TMPDIR=str(tmpdir))
    result = subprocess.run([str(exe), "--bundle-dir", str(root), *args], env=env, capture_output=True, text=True)
    assert result.returncode == expect and (expect != 7 or "hello" in result.stdout), result.stderr[-2000:]
    return initialised(result.stderr)


def test_the_bootloader_leaves_openssl_to_the_imports_that_need_it(stub_path, tmp_path):
    toc = CArchiveReader(str(stub_path)).toc
    binaries = [name for name, entry in toc.items() if entry[4] == "b"]
    assert not [n for n in binaries if os.path.basename(n).startswith(ON_DEMAND)]
    assert lazylibs.BLOB in toc
    exe, _ = make_bundle(tmp_path / "bundle", stub_path)
    (tmp_path / "tmp").mkdir()
    first = _loaded(exe, tmp_path / "root", tmp_path / "tmp")  # installs: hashlib checks every sha256
    crypto = [path for path in first if os.path.basename(path).startswith("libcrypto")]
    assert crypto and all("/_MEI" in path for path in crypto), first  # OpenSSL's, from the unpacked set
    again = _loaded(exe, tmp_path / "root", tmp_path / "tmp")  # installed: needs none of it
    assert again and not [p for p in again if os.path.basename(p).startswith(ON_DEMAND)], again


def test_an_import_unpacks_every_library_its_module_links(stub_path):
    """payload/lazylibs.py NEEDS is written by hand; the real stub's files say what each module links (DT_NEEDED,
    through the set's own libraries): an import must unpack at least that, or its module would not load."""
    from bundler.build.glibc import linked_names

    blob = CArchiveReader(str(stub_path)).extract(lazylibs.BLOB)
    header, _ = lazylibs.read_header(blob, "the set")
    files = {os.path.basename(dest): data for dest, _, data in lazylibs.unpack(blob, "the set")}

    def needs(name):
        return [n for n in linked_names(io.BytesIO(files[name]), name)[1] if n in files]

    modules = [(dest, module) for _, _, module, dest in header if module]
    assert {module for _, module in modules} == set(lazylibs.MODULES)
    for dest, module in modules:
        linked, todo = set(), needs(os.path.basename(dest))
        while todo:
            name = todo.pop()
            if name not in linked:
                linked.add(name)
                todo += needs(name)
        unpacked = {os.path.basename(path) for path in lazylibs.wanted_by(header, module)}
        assert linked <= unpacked, (module, linked, unpacked)
        if module == "_hashlib":  # what a first install unpacks: OpenSSL's libcrypto, not libssl
            assert [n for n in linked if n.startswith("libcrypto")] and not [n for n in unpacked if "libssl" in n]


def test_ctypes_is_unpacked_for_a_rollback_only(stub_path, tmp_path):
    """PyInstaller's bootstrap imports ctypes at every start when it can; with _ctypes and libffi in the set, that
    import fails quietly, and --bundle-rollback (renameat2 through ctypes) unpacks and loads them."""
    (tmp_path / "tmp").mkdir()
    for version in ("1.0.0", "1.1.0"):
        exe, _ = make_bundle(tmp_path / version, stub_path, version=version)
        started = _loaded(exe, tmp_path / "root", tmp_path / "tmp")
        assert not [p for p in started if os.path.basename(p).startswith(("libffi", "_ctypes"))], started
    new_id = os.readlink(tmp_path / "root" / "current")
    rolled = _loaded(exe, tmp_path / "root", tmp_path / "tmp", "--bundle-rollback", expect=0)
    for name in ("libffi", "_ctypes"):
        assert [p for p in rolled if os.path.basename(p).startswith(name) and "/_MEI" in p], rolled
    assert os.readlink(tmp_path / "root" / "previous") == new_id  # swapped


def test_a_pulling_start_unpacks_and_loads_openssl_for_requests(stub_path, tmp_path):
    """requests imports ssl (urllib3 takes no ssl as "no https" without a word): the set must load, not just exist."""
    from testing.registry import BUSYBOX, ImageLayout, Registry, push

    layout = ImageLayout(tmp_path / "layout")
    layout.build("base", {"/bin/busybox": BUSYBOX})
    registry = Registry(tmp_path / "registry").start()
    try:
        push(layout, "base", registry, "test/busybox:1")
        exe = online_bundle(tmp_path / "online", registry.host, stub_path)
        (tmp_path / "tmp").mkdir()
        env = dict(os.environ, LD_DEBUG="files", TMPDIR=str(tmp_path / "tmp"))
        result = subprocess.run(
            [str(exe), "--bundle-dir", str(tmp_path / "root")], env=env, capture_output=True, text=True
        )
    finally:
        registry.stop()
    assert result.returncode == 0 and result.stdout.split() == ["base.tar"], result.stderr[-2000:]
    loaded = initialised(result.stderr)
    assert [p for p in loaded if os.path.basename(p).startswith("libssl") and "/_MEI" in p], loaded
    assert [p for p in loaded if os.path.basename(p).startswith("_ssl") and "/_MEI" in p], loaded


def test_an_installed_start_of_a_realistic_bundle_loads_none_of_the_set(stub_path, cache_dir, tmp_path):
    """Two embedded images, an update repository and a signature with its key pinned: parsing their records, or the
    pin, must not import hashlib, whose OpenSSL the frozen stub would unpack at every start."""
    from stub.root import PINS_DIR
    from testing.bundles import realistic_bundle

    require_registry_tools()  # umoci and skopeo build the images
    exe, _ = realistic_bundle(tmp_path / "bundle", stub_path, cache=cache_dir)
    (tmp_path / "tmp").mkdir()
    root = tmp_path / "root"
    first = _loaded(exe, root, tmp_path / "tmp")  # installs, writes both image archives, pins the key
    assert [p for p in first if os.path.basename(p).startswith("libcrypto")], first
    assert os.listdir(root / PINS_DIR) and {"hello.tar", "world.tar"} <= set(os.listdir(root / "current" / "images"))
    again = _loaded(exe, root, tmp_path / "tmp")
    assert [p for p in again if os.path.basename(p).startswith("libpython")], again  # the trace saw the stub's Python
    assert not [p for p in again if os.path.basename(p).startswith(ON_DEMAND)], again

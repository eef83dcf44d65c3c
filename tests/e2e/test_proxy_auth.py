"""Pulls and updates on the device through a real HTTP proxy (Debian's tinyproxy on loopback, whose log shows what
it forwarded) from a real registry that asks for a password (htpasswd), with the real frozen stub.

requests sends loopback names through the proxy too: it bypasses only what NO_PROXY names, so the registry stays on
127.0.0.1 and the proxy's log must still name it."""

import shutil

import pytest

from testing.bundles import images_manifest, images_project
from testing.faults import ENTRY, SMALL, build, ran, start, write_project
from testing.helpers import bundler, run
from testing.registry import Registry, Tinyproxy, push, write_auth_file
from tests.conftest import require_registry_tools

USER, PASSWORD = "robot", "s3cret-Pa55word"
PROXY_VARS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
)
# The runtime waits for the image the online variant left out (pulled in the background), then lists the archives.
RUNTIME = """#!/bin/sh
"$BUNDLE_EXECUTABLE" --bundle-wait-images derived --timeout 120
code=$?
ls "$BUNDLE_IMAGES"
exit $code
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No proxy and no credentials but what a test sets: none from the machine, none from ~/.docker."""
    for name in PROXY_VARS + ("REGISTRY_AUTH_FILE", "BUNDLE_REGISTRY_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory, image_layout):
    require_registry_tools()
    with Registry(tmp_path_factory.mktemp("storage"), users={USER: PASSWORD}) as running:
        for tag, target in (("base", "test/busybox:1"), ("derived", "test/derived:1")):
            push(image_layout, tag, running, target, creds=f"{USER}:{PASSWORD}")
        yield running


@pytest.fixture(scope="module")
def auth_file(tmp_path_factory, registry):
    return write_auth_file(tmp_path_factory.mktemp("auth") / "registry.json", registry.host, USER, PASSWORD)


@pytest.fixture
def proxy(tmp_path):
    (tmp_path / "proxy").mkdir()
    with Tinyproxy(tmp_path / "proxy") as running:
        yield running


@pytest.fixture(scope="module")
def online(tmp_path_factory, cache_dir, registry, auth_file):
    """An online bundle embedding `base` that pulls `derived` in the background at its first start."""
    images = {"base": "test/busybox:1", "derived": "test/derived:1"}
    project = images_project(
        tmp_path_factory.mktemp("online"), images_manifest(registry.host, images, online_embed=["base"], offline=False)
    )
    (project / "list.sh").write_text(RUNTIME)
    out = project / "online"
    bundler(
        "make",
        "--variant",
        "online",
        "--cache-dir",
        cache_dir,
        "-o",
        out,
        cwd=project,
        env={"REGISTRY_AUTH_FILE": str(auth_file)},
    )
    return out


def _nowhere_in(root, *outputs):
    """The password is in no file of the root (the pull log included) and in no output."""
    secret = PASSWORD.encode()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert secret not in path.read_bytes(), path
    for text in outputs:
        assert PASSWORD not in text


def _registry_requests(proxy, registry):
    return [line for line in proxy.requests() if f"http://{registry.host}/v2/" in line]


def test_a_background_pull_goes_through_the_proxy_with_the_auth_file_from_the_environment(
    online, registry, auth_file, proxy, monkeypatch, tmp_path
):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("BUNDLE_REGISTRY_AUTH", str(auth_file))
    root = tmp_path / "root"
    result = run([online, "--bundle-dir", root], timeout=300)
    assert result.returncode == 0, result.stderr
    assert "derived.tar" in result.stdout.split()
    seen = _registry_requests(proxy, registry)
    assert any("/blobs/sha256:" in line for line in seen), proxy.requests()
    status = start(online, root, "--bundle-status")
    info = start(online, root, "--bundle-info")
    _nowhere_in(root, result.stdout, result.stderr, status.stdout, status.stderr, info.stdout)


def test_no_proxy_naming_the_registry_bypasses_the_proxy(online, registry, auth_file, proxy, monkeypatch, tmp_path):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    root = tmp_path / "root"
    # The option names the file; the detached puller gets its path on its command line.
    result = run([online, "--bundle-dir", root, "--bundle-registry-auth", auth_file], timeout=300)
    assert result.returncode == 0, result.stderr
    assert "derived.tar" in result.stdout.split()
    assert _registry_requests(proxy, registry) == []


def test_a_missing_auth_file_is_a_usage_error(online, tmp_path):
    result = run([online, "--bundle-dir", tmp_path / "root", "--bundle-registry-auth", tmp_path / "nope.json"])
    assert result.returncode == 2 and "--bundle-registry-auth" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "root").exists()


def test_an_update_goes_through_the_proxy_with_the_auth_option(
    tmp_path, cache_dir, stub_path, registry, auth_file, proxy, monkeypatch
):
    ref = f"{registry.host}/edge/fleet:stable"
    built = {}
    for version, entry in (("1.0.0", ENTRY), ("1.0.1", ENTRY + "# changed\n")):
        project = write_project(tmp_path / version, SMALL, version=version, name="fleet", entry=entry)
        with open(project / "bundle.toml", "a") as manifest:
            manifest.write(f'\n[update]\nrepository = "{ref}"\n')
        built[version] = build(project, cache_dir, "--stub", stub_path)
    bundler("push", built["1.0.1"], ref, env={"REGISTRY_AUTH_FILE": str(auth_file)})
    app = tmp_path / "dev" / "app"
    app.parent.mkdir()
    shutil.copy(built["1.0.0"], app)
    root = tmp_path / "root"
    assert ran(start(app, root)) == "1.0.0"
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)  # the registry is plain http: HTTPS_PROXY alone is not used
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    result = start(app, root, "--bundle-update", "--bundle-registry-auth", auth_file)
    assert result.returncode == 0, result.stderr
    assert "updated fleet 1.0.0 -> 1.0.1" in result.stdout
    assert any("/manifests/" in line for line in _registry_requests(proxy, registry)), proxy.requests()
    assert ran(start(app, root)) == "1.0.1"
    _nowhere_in(root, result.stdout, result.stderr)

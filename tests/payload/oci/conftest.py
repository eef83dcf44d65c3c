"""Fixtures for the OCI tests: test images built once, a real registry holding them for the whole session."""

import dataclasses
import shutil

import pytest

from payload.oci.registry import RegistryClient
from tests.fixtures.registry import BUSYBOX, ImageLayout, Registry, TokenService, push

USER, PASSWORD = "alice", "s3cret-pw"
IDENTITY_TOKEN = "refresh-token-for-robot"

ATTESTATION = {"vnd.docker.reference.type": "attestation-manifest"}


def _require_tools():
    missing = [tool for tool in ("docker-registry", "umoci", "skopeo", "htpasswd") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/setup installs them)")


@dataclasses.dataclass
class PushedImages:
    """What the session registry holds, and the digests the layout gave them (the independent truth)."""

    registry: Registry
    layout: ImageLayout

    @property
    def base(self) -> str:  # amd64, one layer (busybox)
        return f"{self.registry.host}/test/busybox:1"

    @property
    def derived(self) -> str:  # base's layer plus one small layer
        return f"{self.registry.host}/test/derived:1"

    @property
    def multi(self) -> str:  # OCI index: attestations, linux/amd64 (= base), linux/arm/v7
        return f"{self.registry.host}/test/multi:1"

    def digest(self, tag: str) -> str:
        return self.layout.manifest_digest(tag)

    def layers(self, tag: str) -> list:
        return self.layout.manifest(tag)["layers"]


@pytest.fixture(scope="session")
def image_layout(tmp_path_factory):
    _require_tools()
    root = tmp_path_factory.mktemp("oci-images")
    motd = root / "motd"
    motd.write_text("hello from the derived image\n")
    statement = root / "statement.json"
    statement.write_text('{"_type": "https://in-toto.io/Statement/v0.1"}\n')
    layout = ImageLayout(root / "layout")
    layout.build("base", {"/bin/busybox": BUSYBOX})
    layout.build("derived", {"/etc/motd": str(motd)}, base="base")
    layout.build("armv7", {"/bin/busybox": BUSYBOX}, architecture="arm")
    layout.build("attest", {"/statement.json": str(statement)})
    layout.add_index(
        "multi",
        [
            # Attestations first: a client that does not skip them picks the wrong manifest.
            layout.descriptor("attest", {"os": "unknown", "architecture": "unknown"}, ATTESTATION),
            layout.descriptor("attest", {"os": "linux", "architecture": "amd64"}, ATTESTATION),
            layout.descriptor("base", {"os": "linux", "architecture": "amd64"}),
            layout.descriptor("armv7", {"os": "linux", "architecture": "arm", "variant": "v7"}),
        ],
    )
    return layout


@pytest.fixture(scope="session")
def images(tmp_path_factory, image_layout):
    with Registry(tmp_path_factory.mktemp("registry-storage")) as registry:
        push(image_layout, "base", registry, "test/busybox:1")
        push(image_layout, "derived", registry, "test/derived:1")
        push(image_layout, "multi", registry, "test/multi:1", all_platforms=True)
        yield PushedImages(registry, image_layout)


@pytest.fixture(scope="session")
def htpasswd_registry(tmp_path_factory, image_layout):
    with Registry(tmp_path_factory.mktemp("auth-storage"), users={USER: PASSWORD}) as registry:
        push(image_layout, "base", registry, "private/busybox:1", creds=f"{USER}:{PASSWORD}")
        yield registry


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory, image_layout):
    pytest.importorskip("cryptography")
    tokens = TokenService(tmp_path_factory.mktemp("token"), users={USER: PASSWORD}, identity_tokens=[IDENTITY_TOKEN])
    try:
        with Registry(tmp_path_factory.mktemp("token-storage"), token=tokens) as registry:
            push(image_layout, "base", registry, "hub/busybox:1", creds=f"{USER}:{PASSWORD}")
            yield registry
    finally:
        tokens.close()


@pytest.fixture(autouse=True)
def no_user_credentials(tmp_path, monkeypatch):
    """The client must not read the credentials of whoever runs the tests."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)


@pytest.fixture
def client():
    with RegistryClient(retries=2, backoff=0.01, progress=False) as registry_client:
        yield registry_client

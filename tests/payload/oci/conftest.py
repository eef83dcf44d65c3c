"""Fixtures for the OCI tests: test images built once, a real registry holding them for the whole session."""

import dataclasses

import pytest

from payload.oci.registry import RegistryClient
from testing.registry import ImageLayout, Registry, TokenService, push

USER, PASSWORD = "alice", "s3cret-pw"
IDENTITY_TOKEN = "refresh-token-for-robot"


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

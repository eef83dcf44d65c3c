import base64
import json

import pytest

from payload.errors import UsageError
from payload.oci.auth import basic_authorization, load_auth_config, parse_challenges


def _auth(user, password):
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_config_json_as_docker_login_writes_it(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": _auth("hubuser", "hub:pw")},
                    "http://127.0.0.1:5000": {"auth": _auth("local", "pw")},
                    "ghcr.io": {"username": "gh", "password": "tok"},
                    "quay.io": {"identitytoken": "refresh"},
                    "empty.example": {},
                },
                "credHelpers": {"gcr.io": "gcloud"},
            }
        )
    )
    config = load_auth_config(str(path))
    hub = config.for_registry("registry-1.docker.io")
    assert (hub.username, hub.password) == ("hubuser", "hub:pw")  # only the first colon splits
    assert config.for_registry("127.0.0.1:5000").username == "local"
    assert config.for_registry("ghcr.io").password == "tok"
    assert config.for_registry("quay.io").identity_token == "refresh"
    assert config.for_registry("empty.example") is None
    assert config.has_helper_for("gcr.io") and not config.has_helper_for("ghcr.io")


def test_auth_file_comes_from_argument_then_env_then_home(tmp_path, monkeypatch):
    home_config = tmp_path / "home" / ".docker" / "config.json"
    home_config.parent.mkdir(parents=True)
    home_config.write_text(json.dumps({"auths": {"r.example": {"auth": _auth("home", "x")}}}))
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps({"auths": {"r.example": {"auth": _auth("env", "x")}}}))
    arg_file = tmp_path / "arg.json"
    arg_file.write_text(json.dumps({"auths": {"r.example": {"auth": _auth("arg", "x")}}}))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    assert load_auth_config().for_registry("r.example").username == "home"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(env_file))
    assert load_auth_config().for_registry("r.example").username == "env"
    assert load_auth_config(str(arg_file)).for_registry("r.example").username == "arg"


def test_missing_default_file_means_no_credentials_but_a_named_one_must_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    assert load_auth_config().for_registry("r.example") is None
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "nope.json"))
    with pytest.raises(UsageError) as caught:
        load_auth_config()
    assert "nope.json" in str(caught.value) and "REGISTRY_AUTH_FILE" in str(caught.value)


@pytest.mark.parametrize("content", ["{not json", "[]", '{"auths": {"r": {"auth": "***"}}}'])
def test_broken_auth_files_are_named(tmp_path, content):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(UsageError) as caught:
        load_auth_config(str(path))
    assert str(path) in str(caught.value)


def test_challenges_as_registries_send_them():
    docker_hub = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"'
    )
    assert parse_challenges(docker_hub) == [
        (
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/busybox:pull",
            },
        )
    ]
    assert parse_challenges('Basic realm="Registry Realm"') == [("basic", {"realm": "Registry Realm"})]
    two = parse_challenges('Basic realm="a, b", Bearer realm="https://t/x",error="insufficient_scope"')
    assert two == [("basic", {"realm": "a, b"}), ("bearer", {"realm": "https://t/x", "error": "insufficient_scope"})]
    assert parse_challenges('Bearer realm="q\\"uote"') == [("bearer", {"realm": 'q"uote'})]


def test_basic_authorization_header():
    from payload.oci.auth import Credentials

    header = basic_authorization(Credentials("u", "p:w"))
    assert header == "Basic " + base64.b64encode(b"u:p:w").decode()

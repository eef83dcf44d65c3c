"""Registry credentials from a docker config.json, and `WWW-Authenticate` challenges.

The file is the one `docker login`, `skopeo login` and `podman login` write: `auths` maps a registry to
`auth` (base64 of `user:password`), or `username`/`password`, or `identitytoken` (an OAuth2 refresh token),
or `registrytoken` (a bearer token used as is). Credential helpers (`credsStore`, `credHelpers`) are not run.
"""

import base64
import binascii
import json
import os
import re
from typing import NamedTuple, Optional

from payload.errors import UsageError
from payload.oci.reference import DOCKER_HUB_REGISTRY

AUTH_FILE_ENV = "REGISTRY_AUTH_FILE"
_DOCKER_HUB_KEYS = {"docker.io", "index.docker.io", "registry-1.docker.io"}


class Credentials(NamedTuple):
    username: str = ""
    password: str = ""
    identity_token: str = ""
    registry_token: str = ""


class AuthConfig(NamedTuple):
    path: Optional[str]
    credentials: dict[str, Credentials]
    helpers: tuple[str, ...]  # registries that only a credential helper knows

    def for_registry(self, registry: str) -> Optional[Credentials]:
        return self.credentials.get(_registry_key(registry))

    def has_helper_for(self, registry: str) -> bool:
        return _registry_key(registry) in self.helpers or "*" in self.helpers


def default_auth_file() -> str:
    return os.path.join(os.path.expanduser("~"), ".docker", "config.json")


def load_auth_config(auth_file: Optional[str] = None) -> AuthConfig:
    """Read credentials from `auth_file`, else $REGISTRY_AUTH_FILE, else ~/.docker/config.json.

    A file named explicitly must exist; the default one may be missing.
    """
    explicit = auth_file or os.environ.get(AUTH_FILE_ENV)
    path = explicit or default_auth_file()
    try:
        with open(path, "rb") as handle:
            document = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        if explicit:
            raise UsageError(
                f"registry auth file {path} does not exist; fix {AUTH_FILE_ENV} or the path given"
            ) from None
        return AuthConfig(None, {}, ())
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read registry auth file {path}: {error}") from None
    if not isinstance(document, dict):
        raise UsageError(f"registry auth file {path} is not a JSON object")
    credentials = {}
    for key, entry in (document.get("auths") or {}).items():
        if isinstance(entry, dict):
            found = _credentials_from_entry(entry, path, key)
            if found is not None:
                credentials[_registry_key(key)] = found
    helpers = tuple(_registry_key(k) for k in (document.get("credHelpers") or {}))
    if document.get("credsStore"):
        helpers += ("*",)
    return AuthConfig(path, credentials, helpers)


def _credentials_from_entry(entry: dict, path: str, key: str) -> Optional[Credentials]:
    username, password = entry.get("username") or "", entry.get("password") or ""
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(entry["auth"], validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise UsageError(f"registry auth file {path}: the auth of {key} is not base64 of user:password") from None
        username, _, password = decoded.partition(":")
    found = Credentials(username, password, entry.get("identitytoken") or "", entry.get("registrytoken") or "")
    return found if any(found) else None


def _registry_key(key: str) -> str:
    """`https://index.docker.io/v1/` and `docker.io` name the same registry; so do `http://h:5000` and `h:5000`."""
    key = re.sub(r"^[a-z]+://", "", key.strip().lower()).split("/", 1)[0]
    return DOCKER_HUB_REGISTRY if key in _DOCKER_HUB_KEYS else key


def basic_authorization(credentials: Credentials) -> str:
    pair = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


_CHALLENGE_RE = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')


def parse_challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """Split a `WWW-Authenticate` value into [(scheme lowercased, {param: value})]."""
    challenges: list[tuple[str, dict[str, str]]] = []
    position = 0
    while position < len(header):
        scheme_match = re.compile(r"\s*,?\s*([A-Za-z][A-Za-z0-9_-]*)(?:\s+|$)").match(header, position)
        if not scheme_match:
            break
        params: dict[str, str] = {}
        position = scheme_match.end()
        while True:
            param_match = _CHALLENGE_RE.match(header, position)
            if not param_match:
                break
            value = param_match.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[param_match.group(1).lower()] = value
            position = param_match.end()
        challenges.append((scheme_match.group(1).lower(), params))
    return challenges

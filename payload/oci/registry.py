"""A small OCI distribution client: resolve an image for a platform, fetch manifests and blobs, all verified.

    client = RegistryClient(insecure_registries=["10.0.0.5:5000"], mirrors=["mirror.local:5000"])
    image = client.resolve("busybox:1.36", platform_for_arch("arm"))
    for layer in image.layers:
        client.fetch_blob(image.reference, layer.digest, f"blobs/{layer.digest[7:]}", layer.size)

`requests` is imported inside methods only: the stub pays for importing it only when it pulls.
"""

import ipaddress
import os
import re
import sys
import time
import urllib.parse
from typing import Callable, Dict, NamedTuple, Optional, Tuple

from payload import fs
from payload.errors import HostError, IntegrityError, NetworkError, UsageError
from payload.oci.auth import AUTH_FILE_ENV, basic_authorization, load_auth_config, parse_challenges
from payload.oci.reference import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    Descriptor,
    Platform,
    Reference,
    check_digest,
    digest_hasher,
    load_json,
    manifest_media_type,
    parse_image_manifest,
    parse_platform,
    parse_reference,
    parse_registry_host,
    platform_of,
    select_platform,
    sha256_digest,
    verify_bytes,
)

MAX_MANIFEST_SIZE = 4 << 20  # containerd's limit too
MAX_CONFIG_SIZE = 16 << 20
_ACCEPT_MANIFESTS = ", ".join(INDEX_TYPES + MANIFEST_TYPES)
_CHUNK = 1 << 16
_MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
LOGIN_HINT = (
    "log in (docker login / skopeo login) or point " + AUTH_FILE_ENV + " at a docker config.json with credentials"
)

ProgressCallback = Callable[[str, int, Optional[int]], None]


class ResolvedImage(NamedTuple):
    reference: Reference  # as asked, with `digest` set to the platform manifest's digest
    platform: Platform
    manifest_digest: str
    manifest_bytes: bytes
    media_type: str
    config: Descriptor
    config_bytes: bytes
    layers: Tuple[Descriptor, ...]
    index_digest: Optional[str]  # the manifest list / OCI index it was chosen from, if any


def is_loopback_host(registry: str) -> bool:
    """127.0.0.0/8, ::1 and localhost, with or without a port: docker allows plain http to these."""
    host = urllib.parse.urlsplit("//" + registry).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Endpoint:
    """One registry host as this client talks to it: base URL once probed, auth challenge, bearer tokens."""

    def __init__(self, host: str, insecure: bool):
        self.host = host
        self.insecure = insecure  # plain http allowed and TLS not verified, as docker's insecure registries
        self.base_url: Optional[str] = None
        self.verify = True
        self.challenge: Optional[Tuple[str, Dict[str, str]]] = None
        self.tokens: Dict[str, str] = {}
        self.unreachable: Optional[str] = None  # why the probe failed: not tried again by this client


class RegistryClient:
    """Pulls from OCI registries. `progress`: None draws a bar on stderr when it is a terminal, False draws
    nothing, a callable gets (label, bytes done, bytes total or None)."""

    def __init__(
        self,
        insecure_registries=(),
        auth_file: Optional[str] = None,
        mirrors=(),
        retries: int = 3,
        progress=None,
        backoff: float = 0.5,
        timeout: Tuple[float, float] = (10.0, 60.0),
    ):
        self._insecure = {parse_registry_host(h, "insecure registry") for h in insecure_registries}
        self._mirrors = tuple(parse_registry_host(m, "registry mirror") for m in mirrors)
        self._auth_file = auth_file
        self._auth = None
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._progress = _progress_callback(progress)
        self._endpoints: Dict[str, _Endpoint] = {}
        self._session = None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # public operations

    def resolve(self, ref, platform) -> ResolvedImage:
        """The image manifest of `ref` (text or Reference) for `platform` (Platform or `linux/arm/v7`),
        with its config, verified."""
        ref = _as_reference(ref)
        if not isinstance(platform, Platform):
            platform = parse_platform(platform)
        data, media_type = self._manifest(ref)
        index_digest = None
        for _depth in range(2):  # an index may point at another index, once
            if media_type not in INDEX_TYPES:
                break
            index_digest = index_digest or sha256_digest(data)
            entry = select_platform(load_json(data, f"manifest list of {ref}"), platform, str(ref))
            child = ref.with_digest(_entry_digest(entry, ref))
            data, media_type = self._manifest(child)
        if media_type not in MANIFEST_TYPES:
            raise UsageError(f"{ref} has a manifest of type {media_type!r}, which this client cannot pull")
        manifest_digest = sha256_digest(data)
        resolved_ref = ref.with_digest(manifest_digest)
        config, layers = parse_image_manifest(data, f"manifest of {ref}")
        config_bytes = self.fetch_blob_bytes(resolved_ref, config.digest, config.size)
        image_platform = platform_of(load_json(config_bytes, f"config of {ref}"))
        if image_platform is not None and not _compatible(image_platform, platform):
            raise UsageError(f"image {ref} is for {image_platform}, not {platform}; pick an image built for {platform}")
        return ResolvedImage(
            resolved_ref, platform, manifest_digest, data, media_type, config, config_bytes, layers, index_digest
        )

    def fetch_manifest(self, ref) -> bytes:
        """The manifest `ref@digest` names, verified against the digest."""
        ref = _as_reference(ref)
        if not ref.digest:
            raise UsageError(f"fetch_manifest needs a reference with a digest, got {ref}")
        return self._manifest(ref)[0]

    def fetch_blob_bytes(self, ref, digest: str, size: Optional[int] = None, limit: int = MAX_CONFIG_SIZE) -> bytes:
        """A small blob (a config) in memory, verified."""
        ref, digest = _as_reference(ref), check_digest(digest)

        def fetch(endpoint):
            path = f"/v2/{ref.repository}/blobs/{digest}"
            with self._request(endpoint, ref, path, {}, stream=True) as response:
                data = self._read_limited(response, min(limit, size) if size is not None else limit, endpoint, ref)
            return verify_bytes(data, digest, f"blob {digest} of {ref} from {endpoint.host}")

        return self._from_sources(ref, fetch)

    def fetch_blob(self, ref, digest: str, dest_path: str, size: Optional[int] = None) -> str:
        """Stream blob `digest` of `ref`'s repository to `dest_path`, verified.

        Bytes go to `dest_path + ".partial"`; an interrupted transfer is resumed with `Range`, by the
        retries here or by a later call. `dest_path` appears only once the sha256 holds.
        """
        ref, digest = _as_reference(ref), check_digest(digest)
        return self._from_sources(ref, lambda endpoint: self._fetch_blob_from(endpoint, ref, digest, dest_path, size))

    # sources: mirrors first for content by digest, then the image's own registry

    def _from_sources(self, ref: Reference, action, by_digest: bool = True):
        hosts = list(self._mirrors) if by_digest else []
        hosts = [h for h in hosts if h != ref.registry] + [ref.registry]
        for host in hosts[:-1]:
            try:
                return action(self._endpoint(host))
            except (NetworkError, IntegrityError) as error:
                sys.stderr.write(f"warning: mirror {host}: {error}; trying the next source\n")
        return action(self._endpoint(hosts[-1]))

    def _endpoint(self, host: str) -> _Endpoint:
        if host not in self._endpoints:
            insecure = is_loopback_host(host) or host in self._insecure
            self._endpoints[host] = _Endpoint(host, insecure)
        return self._endpoints[host]

    # manifests

    def _manifest(self, ref: Reference) -> Tuple[bytes, str]:
        target = ref.digest or ref.tag

        def fetch(endpoint):
            path = f"/v2/{ref.repository}/manifests/{target}"
            with self._request(endpoint, ref, path, {"Accept": _ACCEPT_MANIFESTS}, stream=True) as response:
                data = self._read_limited(response, MAX_MANIFEST_SIZE, endpoint, ref)
                content_type = response.headers.get("Content-Type", "")
            if ref.digest:
                verify_bytes(data, ref.digest, f"manifest of {ref} from {endpoint.host}")
            return data, manifest_media_type(data, content_type)

        return self._from_sources(ref, fetch, by_digest=bool(ref.digest))

    def _read_limited(self, response, limit: int, endpoint: _Endpoint, ref: Reference) -> bytes:
        requests = _requests()
        chunks, total = [], 0
        try:
            for chunk in response.raw.stream(_CHUNK, decode_content=False):
                total += len(chunk)
                if total > limit:
                    raise IntegrityError(f"{response.url} of {ref} is larger than {limit} bytes; refusing it")
                chunks.append(chunk)
        except _transfer_errors(requests) as error:
            raise NetworkError(
                f"reading from registry {endpoint.host} for {ref} failed: {_short_reason(error)}; try again"
            ) from None
        return b"".join(chunks)

    # blobs

    def _fetch_blob_from(self, endpoint, ref, digest, dest_path, size) -> str:
        requests = _requests()
        partial = dest_path + ".partial"
        label = digest[7:19]
        path = f"/v2/{ref.repository}/blobs/{digest}"
        failures = 0
        restarted = False
        while True:
            offset = _file_size(partial)
            if size is not None and offset > size:
                fs.safe_unlink(partial)
                offset = 0
            hasher = _hash_file(partial, digest) if offset else digest_hasher(digest)
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            try:
                with self._request(endpoint, ref, path, headers, stream=True) as response:
                    start = self._start_offset(response, offset, partial)
                    if start is None:
                        continue  # the server could not serve the range asked: ask again from byte 0
                    if start == 0 and offset:
                        hasher = digest_hasher(digest)
                    unsatisfiable = response.status_code == 416
                    if not unsatisfiable:
                        self._stream_to(response, partial, start, size, hasher, label, ref)
            except _transfer_errors(requests) as error:
                failures += 1
                if failures > self.retries:
                    raise NetworkError(
                        f"pulling blob {digest} of {ref} from registry {endpoint.host} was interrupted "
                        f"({_short_reason(error)}); run again to resume"
                    ) from None
                self._sleep(failures)
                continue
            received = _file_size(partial)
            if size is not None and received < size and not unsatisfiable:
                failures += 1  # the body ended early without a transport error
                if failures > self.retries:
                    raise NetworkError(
                        f"registry {endpoint.host} sent {received} of {size} bytes of blob {digest} of {ref}; "
                        "run again to resume"
                    )
                continue
            actual = hasher.name + ":" + hasher.hexdigest()
            if actual == digest:
                fs.commit(partial, dest_path)
                return dest_path
            fs.safe_unlink(partial)
            if offset and not restarted:
                restarted = True  # the kept partial file may be what was wrong: fetch the blob whole once
                continue
            raise IntegrityError(
                f"blob {digest} of {ref} from registry {endpoint.host} has digest {actual}; refused it"
            )

    def _start_offset(self, response, offset: int, partial: str) -> Optional[int]:
        """Where the body of `response` starts in the blob, or None to ask again from byte 0."""
        if response.status_code == 206:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if match and int(match.group(1)) == offset:
                return offset
            fs.safe_unlink(partial)
            return None
        if response.status_code == 416:
            # The partial file may already hold the whole blob; its digest decides.
            return offset
        if offset:
            _truncate(partial)  # the server ignored Range and sends everything
        return 0

    def _stream_to(self, response, partial, offset, size, hasher, label, ref) -> None:
        total = size if size is not None else _content_total(response, offset)
        done = offset
        try:
            handle = open(partial, "ab")
        except OSError as error:
            raise HostError(f"cannot write {partial}: {error.strerror}") from None
        with handle:
            self._progress(label, done, total)
            for chunk in response.raw.stream(_CHUNK, decode_content=False):
                done += len(chunk)
                if size is not None and done > size:
                    handle.close()
                    fs.safe_unlink(partial)
                    raise IntegrityError(f"blob {label} of {ref} is larger than its {size} bytes; refused it")
                try:
                    handle.write(chunk)
                except OSError as error:
                    raise HostError(f"cannot write {partial}: {error.strerror}") from None
                hasher.update(chunk)
                self._progress(label, done, total)
            try:
                handle.flush()
                os.fsync(handle.fileno())
            except OSError as error:
                raise HostError(f"cannot write {partial}: {error.strerror}") from None

    # HTTP with auth, redirects and retries

    def _request(self, endpoint: _Endpoint, ref: Reference, path: str, headers: dict, stream: bool):
        """GET `path` on `endpoint`; returns a response with status 200, 206 or 416, raises otherwise."""
        requests = _requests()
        self._probe(endpoint, ref)
        url = endpoint.base_url + path
        renewed_auth = False
        failures = 0
        while True:
            authorization = self._authorization(endpoint, ref)
            try:
                response = self._get_following_redirects(endpoint, url, headers, authorization, stream)
            except requests.RequestException as error:
                failures += 1
                if failures > self.retries:
                    raise NetworkError(
                        f"cannot reach registry {endpoint.host} for image {ref}: {_short_reason(error)}; "
                        "check the network and that the registry is up"
                    ) from None
                self._sleep(failures)
                continue
            status = response.status_code
            if status in (200, 206, 416):
                return response
            response.close()
            if status == 401 and not renewed_auth:
                challenge = _preferred_challenge(response.headers.get("WWW-Authenticate", ""))
                if challenge is not None:
                    endpoint.challenge = challenge
                    endpoint.tokens.clear()
                    renewed_auth = True
                    continue
            if status in (401, 403):
                raise self._access_error(endpoint, ref, status)
            if status == 404:
                what = path.rsplit("/", 2)
                raise NetworkError(
                    f"{ref}: {what[-2][:-1]} {what[-1]} not found on registry {endpoint.host}; "
                    "check the image name, tag and digest"
                )
            if status == 429 or status >= 500:
                failures += 1
                if failures <= self.retries:
                    self._sleep(failures)
                    continue
            raise NetworkError(f"registry {endpoint.host} answered HTTP {status} for {ref} ({path})")

    def _get_following_redirects(self, endpoint, url, headers, authorization, stream):
        """Registries send blobs from storage hosts: Authorization goes only to the registry's own host."""
        session = self._requests_session()
        own = urllib.parse.urlsplit(endpoint.base_url).netloc
        for _hop in range(_MAX_REDIRECTS + 1):
            target = urllib.parse.urlsplit(url).netloc
            request_headers = dict(headers)
            if authorization and target == own:
                request_headers["Authorization"] = authorization
            verify = endpoint.verify if target == own else not self._insecure_host(target)
            response = session.get(
                url, headers=request_headers, stream=stream, allow_redirects=False, timeout=self.timeout, verify=verify
            )
            if response.status_code not in _REDIRECTS or "Location" not in response.headers:
                return response
            url = urllib.parse.urljoin(url, response.headers["Location"])
            response.close()
        raise NetworkError(f"registry {endpoint.host} redirected more than {_MAX_REDIRECTS} times for {url}")

    def _insecure_host(self, netloc: str) -> bool:
        return is_loopback_host(netloc) or netloc.lower() in self._insecure

    def _probe(self, endpoint: _Endpoint, ref: Reference) -> None:
        """GET /v2/ once per registry: learn the scheme (https; http only when allowed) and the challenge."""
        if endpoint.base_url is not None:
            return
        if endpoint.unreachable is None:
            endpoint.unreachable = self._find_base_url(endpoint, ref)
        if endpoint.unreachable:
            raise NetworkError(
                f"cannot reach registry {endpoint.host} for image {ref}: {endpoint.unreachable}; "
                "check the network and that the registry is up"
            )

    def _find_base_url(self, endpoint: _Endpoint, ref: Reference) -> str:
        """Set the endpoint's base URL and challenge; return "" or why no URL answered."""
        requests = _requests()
        session = self._requests_session()
        if not endpoint.insecure:
            schemes = (("https", True),)
        elif is_loopback_host(endpoint.host):
            # Loopback registries are plain http far more often than not; a TLS one answers 400 and is tried next.
            schemes = (("http", False), ("https", False))
        else:
            schemes = (("https", False), ("http", False))
        reason = "no answer"
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(attempt)
            for scheme, verify in schemes:
                base_url = f"{scheme}://{endpoint.host}"
                try:
                    # A plain-http server may never answer a TLS hello: do not wait the full read timeout.
                    timeout = (self.timeout[0], min(self.timeout[1], 15.0))
                    response = session.get(base_url + "/v2/", timeout=timeout, verify=verify)
                    response.close()
                except requests.exceptions.SSLError as error:
                    if verify:
                        raise NetworkError(
                            f"TLS check of registry {endpoint.host} failed for image {ref} ({_short_reason(error)}); "
                            "install its CA certificate (or set REQUESTS_CA_BUNDLE), or name it an insecure registry"
                        ) from None
                    reason = _short_reason(error)
                    continue
                except requests.RequestException as error:
                    reason = _short_reason(error)
                    continue
                if response.status_code in (200, 401):
                    endpoint.base_url, endpoint.verify = base_url, verify
                    endpoint.challenge = _preferred_challenge(response.headers.get("WWW-Authenticate", ""))
                    return ""
                reason = f"GET /v2/ answered HTTP {response.status_code}"
        return reason

    # authentication

    def _credentials(self, host: str):
        if self._auth is None:
            self._auth = load_auth_config(self._auth_file)
        return self._auth.for_registry(host)

    def _authorization(self, endpoint: _Endpoint, ref: Reference) -> Optional[str]:
        if endpoint.challenge is None:
            return None
        scheme, params = endpoint.challenge
        credentials = self._credentials(endpoint.host)
        if scheme == "basic":
            if credentials is None or not credentials.username:
                raise self._access_error(endpoint, ref, 401)
            return basic_authorization(credentials)
        scope = f"repository:{ref.repository}:pull"
        if scope not in endpoint.tokens:
            if credentials is not None and credentials.registry_token:
                token = credentials.registry_token
            else:
                token = self._fetch_token(endpoint, params, scope, credentials, ref)
            endpoint.tokens[scope] = "Bearer " + token
        return endpoint.tokens[scope]

    def _fetch_token(self, endpoint, params, scope, credentials, ref) -> str:
        """An OAuth2 bearer token from the challenge's realm: anonymous, with user:password, or from an
        identity (refresh) token."""
        requests = _requests()
        realm = params.get("realm", "")
        parts = urllib.parse.urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise NetworkError(f"registry {endpoint.host} named no usable token service ({realm!r}) for {ref}")
        if parts.scheme == "http" and credentials is not None and not self._insecure_host(parts.netloc):
            raise NetworkError(
                f"registry {endpoint.host} wants credentials sent to {realm} over plain http; refused"
            )
        fields = {"scope": scope}
        if params.get("service"):
            fields["service"] = params["service"]
        session = self._requests_session()
        verify = not self._insecure_host(parts.netloc)
        failures = 0
        while True:
            try:
                if credentials is not None and credentials.identity_token:
                    fields.update(
                        grant_type="refresh_token", refresh_token=credentials.identity_token, client_id="bundler"
                    )
                    response = session.post(realm, data=fields, timeout=self.timeout, verify=verify)
                else:
                    auth = None
                    if credentials is not None and credentials.username:
                        auth = (credentials.username, credentials.password)
                    response = session.get(realm, params=fields, auth=auth, timeout=self.timeout, verify=verify)
            except requests.RequestException as error:
                failures += 1
                if failures > self.retries:
                    raise NetworkError(
                        f"cannot reach token service {parts.netloc} of registry {endpoint.host} for image {ref}: "
                        f"{_short_reason(error)}"
                    ) from None
                self._sleep(failures)
                continue
            if response.status_code in (401, 403):
                raise self._access_error(endpoint, ref, response.status_code)
            if response.status_code != 200:
                raise NetworkError(
                    f"token service {parts.netloc} of registry {endpoint.host} answered HTTP {response.status_code}"
                )
            try:
                body = response.json()
                token = body.get("token") or body.get("access_token")
            except (ValueError, AttributeError):
                token = None
            if not isinstance(token, str) or not token:
                raise NetworkError(f"token service {parts.netloc} of registry {endpoint.host} sent no token")
            return token

    def _access_error(self, endpoint: _Endpoint, ref: Reference, status: int) -> NetworkError:
        credentials = self._credentials(endpoint.host)
        if credentials is None:
            message = (
                f"registry {endpoint.host} refused access to {ref} without credentials (HTTP {status}): {LOGIN_HINT}"
            )
            if self._auth.has_helper_for(endpoint.host):
                message += " (credential helpers are not run: put the login in `auths`)"
        else:
            message = (
                f"registry {endpoint.host} refused the credentials from {self._auth.path} for {ref} "
                f"(HTTP {status}): log in again or check {AUTH_FILE_ENV}"
            )
        return NetworkError(message)

    # plumbing

    def _requests_session(self):
        if self._session is None:
            requests = _requests()
            self._session = requests.Session()
            self._session.headers["User-Agent"] = "bundler-oci/1"
            import urllib3

            # Certificates are skipped only for loopback and named insecure registries, on purpose.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        return self._session

    def _sleep(self, failures: int) -> None:
        time.sleep(min(self.backoff * (2 ** (failures - 1)), 30.0))


class StderrProgress:
    """One line per blob on stderr, redrawn at most ten times a second."""

    def __init__(self, stream=None):
        self._stream = stream or sys.stderr
        self._last = 0.0

    def __call__(self, label: str, done: int, total: Optional[int]) -> None:
        finished = total is not None and done >= total
        now = time.monotonic()
        if not finished and now - self._last < 0.1:
            return
        self._last = now
        if total:
            filled = int(30 * done / total)
            line = f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done / 1e6:7.1f}/{total / 1e6:.1f} MB"
        else:
            line = f"\r{label} {done / 1e6:7.1f} MB"
        self._stream.write(line + ("\n" if finished else ""))
        self._stream.flush()


def _progress_callback(progress) -> ProgressCallback:
    if callable(progress):
        return progress
    if progress is None and sys.stderr is not None and sys.stderr.isatty():
        return StderrProgress()
    return lambda label, done, total: None


def _requests():
    import warnings

    try:
        with warnings.catch_warnings():
            # The stub leaves out charset_normalizer (registry answers are JSON and bytes, never guessed text);
            # requests warns when it finds no character detector.
            warnings.filterwarnings("ignore", message=".*character detection dependency.*")
            import requests
    except ImportError:
        raise HostError("pulling images needs the Python package requests, which is missing here") from None
    return requests


def _transfer_errors(requests):
    """What a body read raises when the connection drops or stalls (urllib3 comes with requests)."""
    import urllib3

    return (requests.RequestException, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


def _as_reference(ref) -> Reference:
    return ref if isinstance(ref, Reference) else parse_reference(ref)


def _entry_digest(entry: dict, ref: Reference) -> str:
    try:
        return check_digest(entry.get("digest"))
    except UsageError:
        raise IntegrityError(f"manifest list of {ref} has an entry without a valid digest") from None


def _compatible(image: Platform, wanted: Platform) -> bool:
    """Configs often omit the variant: compare it only when both name one."""
    if (image.os, image.architecture) != (wanted.os, wanted.architecture):
        return False
    return not image.variant or not wanted.variant or image.matches(wanted)


def _preferred_challenge(header: str):
    challenges = dict(parse_challenges(header)) if header else {}
    for scheme in ("bearer", "basic"):
        if scheme in challenges:
            return scheme, challenges[scheme]
    return None


def _short_reason(error: BaseException) -> str:
    text = str(error)
    for pattern in (r"\[Errno -?\d+\] ([^'\")]+)", r"(certificate verify failed[^'\")]*)", r"(Read timed out)"):
        match = re.search(pattern, text)
        if match:
            return match.group(1).strip()
    if "IncompleteRead" in text or "Connection broken" in text:
        return "connection closed in the middle of the transfer"
    return type(error).__name__


def _content_total(response, offset: int) -> Optional[int]:
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _truncate(path: str) -> None:
    with open(path, "wb"):
        pass


def _hash_file(path: str, digest: str):
    """A hasher for `digest`'s algorithm fed with the bytes already in `path`."""
    hasher = digest_hasher(digest)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher

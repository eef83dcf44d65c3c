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
import urllib.parse
from typing import NamedTuple, Optional

from payload import fs, http
from payload import progress as progress_display
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
UPLOAD_CHUNK = 32 << 20  # blobs up to this size go in one PUT; larger ones in chunks of it (PATCH)
_MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
LOGIN_HINT = (
    "log in (docker login / skopeo login) or point "
    + AUTH_FILE_ENV
    + " (on a device: --bundle-registry-auth or BUNDLE_REGISTRY_AUTH) at a docker config.json with credentials"
)


class NotFound(NetworkError):
    """The registry answered 404 for a manifest or blob."""


class ResolvedImage(NamedTuple):
    reference: Reference  # as asked, with `digest` set to the platform manifest's digest
    platform: Platform
    manifest_digest: str
    manifest_bytes: bytes
    media_type: str
    config: Descriptor
    config_bytes: bytes
    layers: tuple[Descriptor, ...]
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


def same_origin(url: str, base_url: str) -> bool:
    """Whether `url` has the scheme and host:port of `base_url`: what a registry's credentials may be sent to."""
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base_url)
    return (a.scheme.lower(), a.netloc.lower()) == (b.scheme.lower(), b.netloc.lower())


class _Endpoint:
    """One registry host as this client talks to it: base URL once probed, auth challenge, bearer tokens."""

    def __init__(self, host: str, insecure: bool):
        self.host = host
        self.insecure = insecure  # plain http allowed and TLS not verified, as docker's insecure registries
        self.base_url: Optional[str] = None
        self.verify = True
        self.challenge: Optional[tuple[str, dict[str, str]]] = None
        self.tokens: dict[str, str] = {}
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
        timeout: tuple[float, float] = (10.0, 60.0),
    ):
        self._insecure = {parse_registry_host(h, "insecure registry") for h in insecure_registries}
        self._mirrors = tuple(parse_registry_host(m, "registry mirror") for m in mirrors)
        self._auth_file = auth_file
        self._auth = None
        self._policy = http.RetryPolicy(retries, backoff)
        self.timeout = timeout
        self._progress = progress_display.callback(progress)
        self._endpoints: dict[str, _Endpoint] = {}
        self._session = None
        self.upload_chunk = UPLOAD_CHUNK

    def close(self) -> None:
        progress_display.finish(self._progress)
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
            data = self._get_small(endpoint, ref, path, {}, min(limit, size) if size is not None else limit)[0]
            return verify_bytes(data, digest, f"blob {digest} of {ref} from {endpoint.host}")

        return self._from_sources(ref, fetch)

    def fetch_blob(self, ref, digest: str, dest_path: str, size: Optional[int] = None) -> str:
        """Stream blob `digest` of `ref`'s repository to `dest_path`, verified.

        Bytes go to `dest_path + ".partial"`; an interrupted transfer is resumed with `Range`, by the
        retries here or by a later call. `dest_path` appears only once the sha256 holds. Neither is fsync'ed
        (an fsync per blob was a quarter of a pull): a file already at `dest_path` is hashed again before it is
        reused, and one that a crash left torn is fetched again. What a caller keeps, it makes durable itself.
        """
        ref, digest = _as_reference(ref), check_digest(digest)
        if _holds_blob(dest_path, digest, size):
            return dest_path
        return self._from_sources(ref, lambda endpoint: self._fetch_blob_from(endpoint, ref, digest, dest_path, size))

    def manifest(self, ref):
        """(bytes, media type, digest) of the manifest `ref` names (a tag: from its own registry; a digest:
        mirrors first, verified), or None when the registry has none (404)."""
        ref = _as_reference(ref)
        try:
            data, media_type = self._manifest(ref)
        except NotFound:
            return None
        return data, media_type, sha256_digest(data)

    def referrers(self, ref, digest: str):
        """The image index of the manifests in `ref`'s repository whose `subject` is `digest`: the OCI 1.1
        referrers API, else its tag fallback `sha256-<hex>` (Debian's docker-registry 2.8 answers 404 to the API);
        None when neither is there. Read from `ref`'s own registry (a mirror may not know the tag)."""
        ref, digest = _as_reference(ref), check_digest(digest)
        endpoint = self._endpoint(ref.registry)
        try:
            data, _ = self._get_small(
                endpoint, ref, f"/v2/{ref.repository}/referrers/{digest}", {"Accept": INDEX_TYPES[0]}, MAX_MANIFEST_SIZE
            )
            doc = load_json(data, f"referrers of {digest} in {ref.name}")
            if doc.get("manifests"):
                return doc
        except NetworkError:  # no referrers API (404, or a 400/405 from a registry that predates it)
            pass
        found = self.manifest(ref._replace(tag=referrers_tag(digest), digest=None))
        return None if found is None else load_json(found[0], f"referrers tag of {digest} in {ref.name}")

    # pushing: blobs by digest (HEAD first, then a monolithic or chunked upload), manifests by digest or tag

    def blob_exists(self, ref, digest: str) -> bool:
        """Whether `ref`'s repository on its own registry has blob `digest` (HEAD; pushing never asks mirrors)."""
        ref, digest = _as_reference(ref), check_digest(digest)
        endpoint = self._endpoint(ref.registry)
        path = f"/v2/{ref.repository}/blobs/{digest}"

        def attempt():
            # A redirect says where the blob's bytes are: it has them.
            with self._send(endpoint, ref, "HEAD", path, ok=(200, 404) + _REDIRECTS, actions="pull,push") as response:
                return response.status_code != 404

        return self._policy.run(attempt, self._give_up(endpoint, ref, "HEAD " + path, resumable=True))

    def upload_blob(self, ref, digest: str, size: int, open_at, label: Optional[str] = None) -> bool:
        """Upload blob `digest` of `size` bytes to `ref`'s repository unless it is there already; True when bytes
        were sent. `open_at(offset)` gives a binary file positioned at that offset of the blob. Blobs larger than
        `upload_chunk` go in chunks (PATCH); an interrupted chunk is resumed where the registry says it stands."""
        ref, digest = _as_reference(ref), check_digest(digest)
        if self.blob_exists(ref, digest):
            return False
        endpoint = self._endpoint(ref.registry)
        label = label or digest[7:19]
        session = {"url": None, "offset": 0}
        start_path = f"/v2/{ref.repository}/blobs/uploads/"

        def attempt():
            if session["url"] is None:
                with self._send(endpoint, ref, "POST", start_path, ok=(202,), actions="pull,push") as response:
                    session["url"], session["offset"] = _location(response), 0
            elif session["offset"]:
                session["offset"] = self._upload_offset(endpoint, ref, session)
            try:
                if size <= self.upload_chunk:
                    session["offset"] = 0  # a failed monolithic upload starts again with a new session
                    url, session["url"] = session["url"], None
                    body = _Body(open_at, 0, size, self._progress, label, size)
                    self._finish_upload(endpoint, ref, url, digest, body)
                    return True
                while session["offset"] < size:
                    offset = session["offset"]
                    length = min(self.upload_chunk, size - offset)
                    body = _Body(open_at, offset, length, self._progress, label, size)
                    headers = {
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + length - 1}",
                    }
                    with self._send(
                        endpoint, ref, "PATCH", session["url"], headers, body, ok=(202,), actions="pull,push"
                    ) as response:
                        session["url"], session["offset"] = _location(response), offset + length
                self._finish_upload(endpoint, ref, session["url"], digest, b"")
                return True
            except http.Retry:
                if session["url"] is not None and size > self.upload_chunk:
                    session["offset"] = max(session["offset"], 1)  # ask the registry where it stands
                raise

        return self._policy.run(attempt, self._give_up(endpoint, ref, f"uploading blob {digest}", resumable=True))

    def _upload_offset(self, endpoint, ref, session) -> int:
        """Where an upload session stands (GET of its URL: 204 with `Range: 0-N`); a gone session starts over."""
        with self._send(endpoint, ref, "GET", session["url"], ok=(204, 404), actions="pull,push") as response:
            if response.status_code == 404:
                session["url"] = None
                raise http.Retry("the registry forgot the upload session")
            session["url"] = _location(response) if response.headers.get("Location") else session["url"]
            match = re.match(r"(?:bytes=)?0-(\d+)$", response.headers.get("Range", ""))
            return int(match.group(1)) + 1 if match else 0

    def _finish_upload(self, endpoint, ref, url, digest, body) -> None:
        separator = "&" if "?" in url else "?"
        headers = {"Content-Type": "application/octet-stream"}
        with self._send(
            endpoint,
            ref,
            "PUT",
            url + separator + "digest=" + urllib.parse.quote(digest),
            headers,
            body,
            ok=(201, 204),
            actions="pull,push",
        ):
            pass

    def put_manifest(self, ref, target: str, data: bytes, media_type: str) -> str:
        """PUT a manifest (or image index) under `target` (a tag or its digest); returns its digest."""
        return self._put_manifest(ref, target, data, media_type)[0]

    def put_referrer(self, ref, data: bytes, media_type: str):
        """PUT a manifest that has a `subject`, by its digest; returns the digest the registry's `OCI-Subject`
        header names, or None: a registry with the referrers API lists the manifest among the subject's referrers
        itself and says so there; without it, the caller updates the referrers tag."""
        return self._put_manifest(ref, sha256_digest(data), data, media_type)[1]

    def _put_manifest(self, ref, target: str, data: bytes, media_type: str):
        ref = _as_reference(ref)
        endpoint = self._endpoint(ref.registry)
        path = f"/v2/{ref.repository}/manifests/{target}"
        digest = sha256_digest(data)

        def attempt():
            with self._send(
                endpoint, ref, "PUT", path, {"Content-Type": media_type}, data, ok=(201, 200), actions="pull,push"
            ) as response:
                said = response.headers.get("Docker-Content-Digest")
                if said and said != digest:
                    raise IntegrityError(
                        f"registry {endpoint.host} stored the manifest of {ref} as {said}, "
                        f"not {digest}; it altered the manifest"
                    )
                return digest, response.headers.get("OCI-Subject")

        return self._policy.run(attempt, self._give_up(endpoint, ref, "PUT " + path, resumable=True))

    def _send(
        self,
        endpoint: _Endpoint,
        ref: Reference,
        method: str,
        url: str,
        headers=None,
        body=None,
        ok=(200,),
        actions: str = "pull",
    ):
        """One request that is not a streamed GET (HEAD, POST, PATCH, PUT, an upload's status), with auth: the
        response when its status is in `ok`; http.Retry for what another attempt may cure; NetworkError else.
        `body`: bytes, or a _Body (rewound for a second try after new credentials)."""
        self._probe(endpoint, ref)
        if url.startswith("/"):
            url = endpoint.base_url + url
        session = self._requests_session()
        target = urllib.parse.urlsplit(url).netloc
        for renewed_auth in (False, True):
            request_headers = dict(headers or {})
            authorization = self._authorization(endpoint, ref, actions)
            if authorization and same_origin(url, endpoint.base_url):
                request_headers["Authorization"] = authorization
            if body is not None and not isinstance(body, (bytes, bytearray)):
                body.rewind()
            try:
                response = session.request(
                    method,
                    url,
                    headers=request_headers,
                    data=body,
                    allow_redirects=False,
                    timeout=self.timeout,
                    verify=endpoint.verify if same_origin(url, endpoint.base_url) else not self._insecure_host(target),
                )
            except http.transfer_errors() as error:
                raise http.Retry(http.short_reason(error, self.timeout)) from None
            status = response.status_code
            if status in ok:
                return response
            response.close()
            if self._auth_renewed(endpoint, ref, response, renewed_auth):
                continue
            failure = http.status_failure(response)
            if failure is not None:
                raise failure
            raise NetworkError(
                f"registry {endpoint.host} refused {method} {urllib.parse.urlsplit(url).path} for "
                f"{ref}: HTTP {status}{_registry_errors(response)}"
            )
        raise AssertionError("unreachable")

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

    def _manifest(self, ref: Reference) -> tuple[bytes, str]:
        target = ref.digest or ref.tag

        def fetch(endpoint):
            path = f"/v2/{ref.repository}/manifests/{target}"
            data, content_type = self._get_small(endpoint, ref, path, {"Accept": _ACCEPT_MANIFESTS}, MAX_MANIFEST_SIZE)
            if ref.digest:
                verify_bytes(data, ref.digest, f"manifest of {ref} from {endpoint.host}")
            return data, manifest_media_type(data, content_type)

        return self._from_sources(ref, fetch, by_digest=bool(ref.digest))

    def _get_small(self, endpoint: _Endpoint, ref: Reference, path: str, headers: dict, limit: int):
        """(body, Content-Type) of a GET whose answer is held in memory (a manifest, a config), retried whole."""

        def attempt():
            with self._request(endpoint, ref, path, headers) as response:
                body = _MemorySink()
                try:
                    http.stream_body(response, body, _no_progress, path, limit=limit)
                except ValueError:
                    raise IntegrityError(f"{response.url} of {ref} is larger than {limit} bytes; refusing it") from None
                return bytes(body.data), response.headers.get("Content-Type", "")

        return self._policy.run(attempt, self._give_up(endpoint, ref, "GET " + path))

    def _give_up(self, endpoint: _Endpoint, ref: Reference, what: str, resumable: bool = False):
        def give_up(reason, attempts):
            return http.network_error(
                f"{what} for {ref}",
                f"registry {endpoint.host}",
                f"{reason} ({http.attempts_text(attempts)})",
                "check the network and that the registry is up" + ("; run again to resume" if resumable else ""),
            )

        return give_up

    # blobs

    def _fetch_blob_from(self, endpoint, ref, digest, dest_path, size) -> str:
        partial = _PartialBlob(dest_path + ".partial", digest, size)
        path = f"/v2/{ref.repository}/blobs/{digest}"
        label = digest[7:19]
        state = {"whole": False}

        def attempt():
            resumed = partial.size > 0
            try:
                with self._request(endpoint, ref, path, http.resume_headers(partial)) as response:
                    # 416: the kept partial file may already hold the whole blob; its digest decides.
                    if response.status_code != 416:
                        http.body_start(response, partial)
                        http.stream_body(response, partial, self._progress, label, limit=size)
            except ValueError:
                partial.remove()
                raise IntegrityError(f"blob {label} of {ref} is larger than its {size} bytes; refused it") from None
            finally:
                partial.close()
            if partial.actual() == digest:
                fs.commit(partial.path, dest_path, durable=False)
                return dest_path
            actual = partial.actual()
            partial.remove()
            if resumed and not state["whole"]:
                state["whole"] = True  # the kept partial file may be what was wrong: fetch the blob whole once
                raise http.Retry(f"the resumed blob has digest {actual}")
            raise IntegrityError(
                f"blob {digest} of {ref} from registry {endpoint.host} has digest {actual}; refused it"
            )

        def give_up(reason, attempts):
            return NetworkError(
                f"pulling blob {digest} of {ref} from registry {endpoint.host} was interrupted ({reason}, "
                f"{http.attempts_text(attempts)}); run again to resume"
            )

        return self._policy.run(attempt, give_up)

    # HTTP with auth, redirects and retries

    def _request(self, endpoint: _Endpoint, ref: Reference, path: str, headers: dict):
        """One GET of `path` on `endpoint` (two when the registry asks for new credentials): a streamed response
        with status 200, 206 or 416; http.Retry for what another attempt may cure; NetworkError otherwise."""
        self._probe(endpoint, ref)
        url = endpoint.base_url + path
        for renewed_auth in (False, True):
            authorization = self._authorization(endpoint, ref)
            try:
                response = self._get_following_redirects(endpoint, url, headers, authorization)
            except http.requests_module().RequestException as error:
                raise http.Retry(http.short_reason(error, self.timeout)) from None
            status = response.status_code
            if status in (200, 206, 416):
                return response
            response.close()
            if self._auth_renewed(endpoint, ref, response, renewed_auth):
                continue
            if status == 404:
                what = path.rsplit("/", 2)
                raise NotFound(
                    f"{ref}: {what[-2][:-1]} {what[-1]} not found on registry {endpoint.host}; "
                    "check the image name, tag and digest"
                )
            failure = http.status_failure(response)
            if failure is not None:
                raise failure
            raise http.network_error(
                f"GET {path} for {ref}",
                f"registry {endpoint.host}",
                f"HTTP {status}",
                "check the image reference and the registry",
            )
        raise AssertionError("unreachable")

    def _auth_renewed(self, endpoint, ref, response, renewed_auth) -> bool:
        """For a 401 or 403: True when a first 401 brought a new challenge (try once more with it); else raise
        the access error. False for other statuses."""
        status = response.status_code
        if status == 401 and not renewed_auth:
            challenge = _preferred_challenge(response.headers.get("WWW-Authenticate", ""))
            if challenge is not None:
                endpoint.challenge = challenge
                endpoint.tokens.clear()
                return True
        if status in (401, 403):
            raise self._access_error(endpoint, ref, status)
        return False

    def _get_following_redirects(self, endpoint, url, headers, authorization):
        """Registries send blobs from storage hosts: Authorization goes only to the registry's own scheme and host
        (never to another host, nor over http after a redirect from https)."""
        session = self._requests_session()
        for _hop in range(_MAX_REDIRECTS + 1):
            target = urllib.parse.urlsplit(url).netloc
            own = same_origin(url, endpoint.base_url)
            request_headers = dict(headers)
            if authorization and own:
                request_headers["Authorization"] = authorization
            verify = endpoint.verify if own else not self._insecure_host(target)
            response = session.get(
                url, headers=request_headers, stream=True, allow_redirects=False, timeout=self.timeout, verify=verify
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
            try:
                self._policy.run(lambda: self._find_base_url(endpoint, ref), lambda reason, _: _Unreachable(reason))
                endpoint.unreachable = ""
            except _Unreachable as error:
                endpoint.unreachable = str(error)
        if endpoint.unreachable:
            raise NetworkError(
                f"cannot reach registry {endpoint.host} for image {ref}: {endpoint.unreachable}; "
                "check the network and that the registry is up"
            )

    def _find_base_url(self, endpoint: _Endpoint, ref: Reference) -> None:
        """Set the endpoint's base URL and challenge, or raise http.Retry saying why no URL answered."""
        requests = http.requests_module()
        session = self._requests_session()
        if not endpoint.insecure:
            schemes = (("https", True),)
        elif is_loopback_host(endpoint.host):
            # Loopback registries are plain http far more often than not; a TLS one answers 400 and is tried next.
            schemes = (("http", False), ("https", False))
        else:
            schemes = (("https", False), ("http", False))
        reason, after = "no answer", None
        # One pass over the schemes is one attempt.
        for scheme, verify in schemes:
            base_url = f"{scheme}://{endpoint.host}"
            try:
                # A plain-http server may never answer a TLS hello: do not wait the full read timeout.
                timeout = (self.timeout[0], min(self.timeout[1], 15.0))
                response = session.get(base_url + "/v2/", timeout=timeout, verify=verify)
                response.close()
            except requests.Timeout as error:
                # A host that takes the connection and never answers (or never takes it) does not answer the
                # next scheme or the next attempt either: waiting for them made a hung registry cost minutes.
                raise _Unreachable(http.short_reason(error, timeout)) from None
            except requests.exceptions.SSLError as error:
                if verify:
                    raise NetworkError(
                        f"TLS check of registry {endpoint.host} failed for image {ref} ({http.short_reason(error)}); "
                        "install its CA certificate (or set REQUESTS_CA_BUNDLE), or name it an insecure registry"
                    ) from None
                reason = http.short_reason(error)
                continue
            except requests.RequestException as error:
                reason = http.short_reason(error)
                continue
            if response.status_code in (200, 401):
                endpoint.base_url, endpoint.verify = base_url, verify
                endpoint.challenge = _preferred_challenge(response.headers.get("WWW-Authenticate", ""))
                return
            reason = f"GET /v2/ answered HTTP {response.status_code}"
            after = http.retry_after(response)
        raise http.Retry(reason, after)

    # authentication

    def _credentials(self, host: str):
        if self._auth is None:
            self._auth = load_auth_config(self._auth_file)
        return self._auth.for_registry(host)

    def _authorization(self, endpoint: _Endpoint, ref: Reference, actions: str = "pull") -> Optional[str]:
        if endpoint.challenge is None:
            return None
        scheme, params = endpoint.challenge
        credentials = self._credentials(endpoint.host)
        if scheme == "basic":
            if credentials is None or not credentials.username:
                raise self._access_error(endpoint, ref, 401)
            return basic_authorization(credentials)
        scope = f"repository:{ref.repository}:{actions}"
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
        requests = http.requests_module()
        realm = params.get("realm", "")
        parts = urllib.parse.urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise NetworkError(f"registry {endpoint.host} named no usable token service ({realm!r}) for {ref}")
        if parts.scheme == "http" and credentials is not None and not self._insecure_host(parts.netloc):
            raise NetworkError(f"registry {endpoint.host} wants credentials sent to {realm} over plain http; refused")
        fields = {"scope": scope}
        if params.get("service"):
            fields["service"] = params["service"]
        session = self._requests_session()
        verify = not self._insecure_host(parts.netloc)

        def attempt():
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
                raise http.Retry(http.short_reason(error, self.timeout)) from None
            if response.status_code in (401, 403):
                raise self._access_error(endpoint, ref, response.status_code)
            failure = http.status_failure(response)
            if failure is not None:
                raise failure
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

        def give_up(reason, attempts):
            return http.network_error(
                f"a token for {ref}",
                f"token service {parts.netloc} of registry {endpoint.host}",
                f"{reason} ({http.attempts_text(attempts)})",
                "check the network and that the token service is up",
            )

        return self._policy.run(attempt, give_up)

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
            self._session = http.session("bundler-oci/1")
            import urllib3

            # Certificates are skipped only for loopback and named insecure registries, on purpose.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        return self._session


class _Unreachable(Exception):
    """Why no URL of a registry answered its /v2/ probe."""


def _no_progress(label, done, total):
    pass


class _MemorySink:
    """A small body kept in memory (with the size/write/reset of the other sinks)."""

    def __init__(self):
        self.data = bytearray()

    @property
    def size(self):
        return len(self.data)

    def write(self, chunk):
        self.data += chunk

    def reset(self):
        del self.data[:]


class _PartialBlob:
    """A blob being pulled into `path` (dest + ".partial"), kept across attempts and runs for Range resume, and
    hashed as its bytes arrive."""

    def __init__(self, path, digest, expected_size):
        self.path, self.digest = path, digest
        self.size = _file_size(path)
        if expected_size is not None and self.size > expected_size:
            self.remove()
        self.hasher = _hash_file(path, digest) if self.size else digest_hasher(digest)
        self._handle = None

    def write(self, chunk):
        try:
            if self._handle is None:
                self._handle = open(self.path, "ab")
            self._handle.write(chunk)
        except OSError as error:
            raise HostError(f"cannot write {self.path}: {error.strerror}") from None
        self.hasher.update(chunk)
        self.size += len(chunk)

    def reset(self):
        self.remove()

    def remove(self):
        self.close()
        fs.safe_unlink(self.path)
        self.size, self.hasher = 0, digest_hasher(self.digest)

    def close(self):
        if self._handle is not None:
            handle, self._handle = self._handle, None
            try:
                handle.flush()
            except OSError as error:
                raise HostError(f"cannot write {self.path}: {error.strerror}") from None
            finally:
                handle.close()

    def actual(self):
        return self.hasher.name + ":" + self.hasher.hexdigest()


def _location(response) -> str:
    location = response.headers.get("Location")
    if not location:
        raise NetworkError(
            f"{response.request.method} {response.url} answered {response.status_code} without a "
            "Location; the registry does not support uploads"
        )
    return urllib.parse.urljoin(response.url, location)


def _registry_errors(response) -> str:
    """The `errors` of a distribution error body, as `: CODE message`."""
    try:
        errors = response.json().get("errors") or []
        found = "; ".join(
            "{} {}".format(e.get("code", ""), e.get("message", "")) for e in errors if isinstance(e, dict)
        )
    except (ValueError, AttributeError):
        found = ""
    return ": " + found.strip() if found.strip() else ""


class _Body:
    """`length` bytes of a blob from `offset`, as a request body with a known length (so requests sends
    Content-Length, never chunked encoding), read again from its start for a second try."""

    def __init__(self, open_at, offset, length, progress, label, total):
        self.open_at, self.offset, self.length = open_at, offset, length
        self.progress, self.label, self.total = progress, label, total
        self.handle, self.left = None, length

    def __len__(self):
        return self.length

    def rewind(self):
        if self.handle is not None:
            self.handle.close()
        self.handle, self.left = self.open_at(self.offset), self.length

    def read(self, size=-1):
        if self.handle is None:
            self.rewind()
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = self.handle.read(size) if size else b""
        self.left -= len(data)
        if size and not data:
            raise HostError(f"blob {self.label} ended {self.left} bytes early while it was being sent")
        self.progress(self.label, self.offset + self.length - self.left, self.total)
        if not self.left:
            self.handle.close()
        return data


def referrers_tag(digest: str) -> str:
    """The OCI 1.1 referrers tag schema: `sha256-<hex>` names the image index of a manifest's referrers."""
    algorithm, hexdigest = check_digest(digest).split(":", 1)
    return f"{algorithm}-{hexdigest}"


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


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _holds_blob(path: str, digest: str, size: Optional[int]) -> bool:
    """Whether `path` holds blob `digest` whole (hashed now). A file that does not, left torn by a crash (blobs are
    not fsync'ed) or changed since, is removed with a warning so that it is fetched again."""
    if not os.path.isfile(path):
        return False
    try:
        if (size is None or os.path.getsize(path) == size) and _hash_file(path, digest).hexdigest() == digest.partition(
            ":"
        )[2]:
            return True
        sys.stderr.write(f"warning: {path} does not hold blob {digest} (torn by a crash?); fetching it again\n")
        fs.safe_unlink(path)
    except OSError as error:
        raise HostError(f"cannot check the pulled blob {path}: {error.strerror}") from None
    return False


def _hash_file(path: str, digest: str):
    """A hasher for `digest`'s algorithm fed with the bytes already in `path`."""
    hasher = digest_hasher(digest)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher

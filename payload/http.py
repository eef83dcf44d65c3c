"""One HTTP transport for both sides: the retry loop (backoff, `Retry-After`), Range resume into a sink, the
reasons a failure is named by, and the session. `requests` is imported only when a request is made: the stub
pays for it only when it pulls.

    policy = RetryPolicy(retries=3, backoff=0.5)
    policy.run(attempt, give_up)        # attempt() raises Retry("why", after=seconds) for what may pass

bundler/build/download.py keeps the cache glue on top, payload/oci/registry.py the OCI protocol (tokens, manifests,
mirrors); neither has a retry loop of its own.
"""

import email.utils
import re
import time

from payload.errors import HostError, NetworkError
from payload.fs import CHUNK

TIMEOUT = (15.0, 60.0)  # connect, between bytes (seconds)
RETRY_STATUSES = frozenset((408, 425, 429))  # and every 5xx
MAX_DELAY = 30.0  # the longest backoff between attempts
MAX_RETRY_AFTER = 120.0  # a server asking for a longer pause than this is not waited for


class Retry(Exception):
    """A failure another attempt may cure. `after`: the pause the server asked for (Retry-After), in seconds."""

    def __init__(self, reason, after=None):
        super().__init__(reason)
        self.reason = reason
        self.after = after


class RetryPolicy:
    """The one retry loop: every Retry counts one failure, however it came about."""

    def __init__(self, retries=3, backoff=0.5, sleep=time.sleep):
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep

    def delay(self, failures, after=None):
        """Exponential backoff, never shorter than what the server asked for."""
        return max(min(self.backoff * (2 ** (failures - 1)), MAX_DELAY), after or 0.0)

    def run(self, attempt, give_up):
        """attempt() until it returns. After `retries` failures, or when the server asks for a pause longer than
        MAX_RETRY_AFTER, raise give_up(reason, attempts made)."""
        failures = 0
        while True:
            try:
                return attempt()
            except Retry as retry:
                failures += 1
                reason = retry.reason
                if retry.after is not None and retry.after > MAX_RETRY_AFTER:
                    raise give_up(f"{reason}, and the server asks to wait {int(retry.after)} s", failures) from None
                if failures > self.retries:
                    raise give_up(reason, failures) from None
                self._sleep(self.delay(failures, retry.after))


def attempts_text(attempts):
    return "1 attempt" if attempts == 1 else f"{attempts} attempts"


def is_retryable_status(status):
    return status in RETRY_STATUSES or status >= 500


def retry_after(response):
    """The pause a 429/503 asks for (`Retry-After`: seconds or an HTTP date), in seconds, or None."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def status_failure(response):
    """A Retry for a status another attempt may cure, else None."""
    status = response.status_code
    if is_retryable_status(status):
        return Retry(f"HTTP {status} {response.reason or ''}", retry_after(response))
    return None


def requests_module():
    """requests, imported on first use (it costs about 0.1 s of start-up)."""
    import warnings

    try:
        with warnings.catch_warnings():
            # The stub leaves out charset_normalizer (answers are JSON and bytes, never guessed text);
            # requests warns when it finds no character detector.
            warnings.filterwarnings("ignore", message=".*character detection dependency.*")
            import requests
    except ImportError:
        raise HostError("network access needs the Python package requests, which is missing here") from None
    return requests


def import_in_background(*modules):
    """Import `modules` (requests last: 0.1 s) in a daemon thread, so that a pull the caller knows is coming
    does not wait for them: they run while the install waits for the disk and decompresses. A failure here is
    ignored; the import is made again where it is needed, and fails there with its own message."""
    import threading

    def work():
        try:
            for name in modules:
                __import__(name)
            requests_module()
        except BaseException:  # noqa: B036 -- a head start, never an error of its own
            pass

    thread = threading.Thread(target=work, name="import-requests", daemon=True)
    thread.start()
    return thread


def session(user_agent):
    requests = requests_module()
    new = requests.Session()
    new.headers["User-Agent"] = user_agent
    return new


def transfer_errors():
    """What sending a request or reading a body raises when the connection drops or stalls."""
    requests = requests_module()
    import urllib3

    return (requests.RequestException, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


def short_reason(error, timeout=None):
    """One short lower-case line out of the nested exceptions requests and urllib3 raise. `timeout`: the
    (connect, read) seconds the request was sent with, named when it ran out."""
    import urllib3

    requests = requests_module()
    if timeout is not None and isinstance(error, requests.ConnectTimeout):
        return f"no connection within {timeout[0]:g} s (connect timeout)"
    if timeout is not None and isinstance(error, requests.ReadTimeout):
        return f"no answer within {timeout[1]:g} s (read timeout)"

    if isinstance(error, requests.exceptions.ProxyError):
        # The registry's own name alone would send the reader to the wrong host. The proxy's URL is not named: it
        # may carry a password.
        return (
            f"through the proxy: {short_reason(error.args[0] if error.args else error)} (see HTTP(S)_PROXY, NO_PROXY)"
        )
    inner = error.args[0] if error.args else None
    if isinstance(inner, urllib3.exceptions.MaxRetryError) and inner.reason is not None:
        error = inner.reason
    text = str(error)
    if isinstance(error, urllib3.exceptions.NameResolutionError) or "Failed to resolve" in text:
        host = re.search(r"Failed to resolve '([^']+)'", text)
        return f"cannot resolve host {host.group(1)}" if host else "cannot resolve host"
    for pattern in (r"\[Errno -?\d+\] ([^'\")\]]+)", r"(certificate verify failed[^'\")]*)"):
        found = re.findall(pattern, text)
        if found:
            return found[-1].strip().lower()
    if "IncompleteRead" in text or "Connection broken" in text:
        return "connection closed in the middle of the transfer"
    # after the errno check: urllib3's NewConnectionError is a subclass of its timeout error
    if isinstance(error, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)) or "timed out" in text:
        return "timed out"
    return text.splitlines()[0][:200] if text else type(error).__name__


def network_error(what, host, reason, hint):
    """The one way a failed transfer is named: what, from which host, why, what to do (exit 5)."""
    return NetworkError(f"{what} from {host} failed: {reason}; {hint}")


def content_range_start(response):
    """The first byte a 206 answer carries (from Content-Range), or None."""
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def resume_headers(sink):
    return {"Range": f"bytes={sink.size}-"} if sink.size else {}


def body_start(response, sink):
    """Make `sink` ready for the body of `response` to a request sent with resume_headers(sink): keep its bytes
    when the server resumed where it asked, start it again when the server sends everything. A 206 from
    another offset is a failure like any other: it counts an attempt, and the next one starts from byte 0."""
    if response.status_code == 206:
        if sink.size and content_range_start(response) == sink.size:
            return
        sink.reset()
        raise Retry("the server resumed at the wrong offset ({})".format(response.headers.get("Content-Range", "none")))
    if sink.size:
        sink.reset()  # the server ignored Range and sends everything


def stream_body(response, sink, progress, label, limit=None):
    """Write the body of `response` into `sink`, reporting progress as (label, bytes, total). A body cut short,
    by a dropped connection or an early end, is a Retry (resumed with Range by the next attempt); more bytes
    than `limit` is a ValueError for the caller to name."""
    length = response.headers.get("Content-Length")
    total = sink.size + int(length) if length and length.isdigit() else limit
    progress(label, sink.size, total)
    try:
        for chunk in response.raw.stream(CHUNK, decode_content=False):
            if limit is not None and sink.size + len(chunk) > limit:
                raise ValueError(f"more than {limit} bytes")
            sink.write(chunk)
            progress(label, sink.size, total)
    except transfer_errors() as error:
        what = "timed out" if "timed out" in str(error).lower() else "connection broken"
        raise Retry(f"{what} after {sink.size}{f' of {total}' if total else ''} bytes") from None
    if total is not None and sink.size < total:
        raise Retry(f"connection closed after {sink.size} of {total} bytes")

"""Error types shared by both sides; each carries the exit code the CLI and the stub use."""

import errno


class BundleError(Exception):
    """A failure with a one-line message meant for the user."""

    exit_code = 1

    def __init__(self, message):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


class UsageError(BundleError):
    """Bad command line or manifest."""

    exit_code = 2


class IntegrityError(BundleError):
    """A checksum, signature or the index does not hold."""

    exit_code = 3


class HostError(BundleError):
    """The environment is unfit: no space, noexec mount, permissions."""

    exit_code = 4


class NetworkError(BundleError):
    """A download or registry failed."""

    exit_code = 5


class NotReady(BundleError):
    """What was waited for is not there yet (--bundle-wait-images ran out of time)."""

    exit_code = 6


UPDATE_AVAILABLE = 7  # --bundle-update --bundle-check: the registry holds an update (not an error: no message)

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def write_error(exc, no_space, otherwise):
    """An OSError met while writing, as the one-line HostError the user can act on: `no_space` when the file system
    is full, else `otherwise(reason)` with the system's reason."""
    if exc.errno in NO_SPACE:
        return HostError(no_space)
    return HostError(otherwise(exc.strerror or str(exc)))

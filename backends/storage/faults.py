"""Retrying object-store calls through transient faults.

The client libraries retry some faults themselves (botocore, s3fs and gcsfs each have a
loop), but not all of them, and not a whole multi-request operation such as a streamed
download. This module is the outer layer: a call that fails with a fault that may pass
(a reset or refused connection, a timeout, a 5xx answer, throttling, a corrupted transfer)
is run again after an exponentially growing, jittered pause; anything else (no such bucket,
access denied, a failed precondition) is raised at once.
"""

from __future__ import annotations

import errno
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from toilray.exceptions import JobStoreError

logger = logging.getLogger("toilray.storage")

T = TypeVar("T")

_TRANSIENT_ERRNOS = {
    errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT,
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EAGAIN,
}
_TRANSIENT_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
    "InternalError", "ServiceUnavailable", "RequestLimitExceeded", "TooManyRequests",
}
# Exception class names of the client libraries that mean the connection or the answer was
# lost on the way. Matching by name keeps this module free of imports of optional clients.
_TRANSIENT_CLASS_NAMES = {
    "ClientPayloadError", "ServerDisconnectedError", "ClientOSError", "ClientConnectionError",
    "ClientConnectorError", "ServerTimeoutError", "EndpointConnectionError", "ConnectionClosedError",
    "ReadTimeoutError", "ConnectTimeoutError", "ResponseStreamingError", "IncompleteReadError",
    "IncompleteRead", "ProtocolError", "ChunkedEncodingError", "ProxyError", "ChecksumError",
    "FSTimeoutError", "RemoteDisconnected", "ContentLengthError", "TransferEncodingError",
}


class ChecksumMismatchError(JobStoreError):
    """The bytes that arrived are not the bytes that were stored."""


class StorageUnavailableError(JobStoreError):
    """A storage service kept failing with transient faults until the retries ran out."""


class StorageAccessDeniedError(JobStoreError):
    """The service refused the request: the credentials lack a permission."""


class StorageConfigurationError(JobStoreError):
    """A bucket or locator that cannot be used as given (bad name, taken bucket name)."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int):
            return status
    for attribute in ("code", "status"):
        value = getattr(exc, attribute, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    return None


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a fault worth retrying."""
    for link in _chain(exc):
        if isinstance(link, ChecksumMismatchError):
            return True
        if isinstance(link, FileNotFoundError | PermissionError | FileExistsError | JobStoreError):
            return False
        if type(link).__name__ in _TRANSIENT_CLASS_NAMES:
            return True
        if isinstance(link, ConnectionError | TimeoutError):
            return True
        if isinstance(link, OSError) and link.errno in _TRANSIENT_ERRNOS:
            return True
        # urllib wraps the socket error of a failed connection in URLError.reason.
        reason = getattr(link, "reason", None)
        if isinstance(reason, ConnectionError | TimeoutError):
            return True
        if _error_code(link) in _TRANSIENT_CODES:
            return True
        status = _http_status(link)
        if status is not None and (status >= 500 or status in (408, 429)):
            return True
    return False


class Retrier:
    """Runs calls again on transient faults, with exponential backoff and full jitter."""

    def __init__(self, attempts: int = 8, first_delay: float = 0.2, max_delay: float = 15.0) -> None:
        self.attempts = attempts
        self.first_delay = first_delay
        self.max_delay = max_delay

    def __call__(self, description: str, call: Callable[[], T]) -> T:
        attempt = 1
        while True:
            try:
                return call()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempt >= self.attempts:
                    if isinstance(exc, ChecksumMismatchError):
                        raise  # a corruption that persists: say so, not "unavailable"
                    raise StorageUnavailableError(
                        f"{description} failed {attempt} times with transient faults; "
                        f"the last was {type(exc).__name__}: {exc}"
                    ) from exc
                delay = random.uniform(0, min(self.max_delay, self.first_delay * 2 ** (attempt - 1)))
                logger.info("%s hit %s: %s; retrying in %.1f s", description, type(exc).__name__, exc, delay)
                time.sleep(delay)
                attempt += 1

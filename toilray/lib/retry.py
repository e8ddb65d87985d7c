"""Toil's ``toil.lib.retry``: retry a function on the errors named, after the intervals given.

``@retry(errors=[ValueError])`` retries on ValueError after 1, 1, 2, 4, 8 and 16 seconds, then
lets the error through. An ``ErrorCondition`` narrows an error to HTTP status codes, boto error
codes or a phrase of its message, or (``retry_on_this_condition=False``) says never to retry it.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import logging
import time
import traceback
import urllib.error
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

# The HTTP errors whose status ``ErrorCondition(error_codes=...)`` can read; those of requests and
# urllib3 too when they are installed (Ray's client installs them).
SUPPORTED_HTTP_ERRORS: list[type[BaseException]] = [http.client.HTTPException, urllib.error.HTTPError]
with contextlib.suppress(ImportError):
    import urllib3.exceptions

    SUPPORTED_HTTP_ERRORS.append(urllib3.exceptions.HTTPError)
with contextlib.suppress(ImportError):
    import requests.exceptions

    SUPPORTED_HTTP_ERRORS.append(requests.exceptions.HTTPError)

DEFAULT_DELAYS = (0, 1, 1, 4, 16, 64)
DEFAULT_TIMEOUT = 300

RT = TypeVar("RT")


class ErrorCondition:
    """An error to retry (or, with ``retry_on_this_condition=False``, never to retry), with the
    HTTP status codes, boto error codes or message phrase that must match."""

    def __init__(
        self,
        error: type[BaseException] | None = None,
        error_codes: list[int] | None = None,
        boto_error_codes: list[str] | None = None,
        error_message_must_include: str | None = None,
        retry_on_this_condition: bool = True,
    ) -> None:
        if error is None:
            error = _boto_client_error() if boto_error_codes else Exception
        self.error = error
        self.error_codes = error_codes
        self.boto_error_codes = boto_error_codes
        self.error_message_must_include = error_message_must_include
        self.retry_on_this_condition = retry_on_this_condition
        if error_codes and error not in SUPPORTED_HTTP_ERRORS:
            raise NotImplementedError(f"Unknown error type used with error_codes: {error}")
        if boto_error_codes and not issubclass(error, _boto_client_error()):
            raise NotImplementedError(f"Unknown error type used with boto_error_codes: {error}")


def _boto_client_error() -> type[BaseException]:
    try:
        from botocore.exceptions import ClientError
    except ImportError:
        raise NotImplementedError("boto_error_codes need botocore, which is not installed") from None
    return ClientError


def retry(
    intervals: list[float] | None = None,
    infinite_retries: bool = False,
    errors: Sequence[ErrorCondition | type[Exception]] | None = None,
    log_message: tuple[Callable[..., Any], str] | None = None,
    prepare: list[Callable[..., Any]] | None = None,
) -> Callable[[Callable[..., RT]], Callable[..., RT]]:
    """Decorate a function to retry it on ``errors`` (default: any Exception), waiting each of
    ``intervals`` seconds in turn (default 1, 1, 2, 4, 8, 16); once they are used up the error is
    raised, unless ``infinite_retries`` starts them over. ``log_message`` is (function, message),
    called before each attempt; each of ``prepare`` gets the call's arguments before a retry."""
    waits = list(intervals) if intervals else [1, 1, 2, 4, 8, 16]
    conditions = [e for e in errors or [Exception] if isinstance(e, ErrorCondition)]
    plain = tuple(e for e in errors or [Exception] if not isinstance(e, ErrorCondition))
    catch = plain + tuple(c.error for c in conditions if c.retry_on_this_condition)

    def retriable(error: BaseException) -> bool:
        # As the examples above read: a matching "never retry" condition wins, then a plain error.
        if any(not c.retry_on_this_condition and _matches(error, c) for c in conditions):
            return False
        return isinstance(error, plain) or error_meets_conditions(error, conditions)

    def decorate(func: Callable[..., RT]) -> Callable[..., RT]:
        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> RT:
            remaining = list(waits)
            while True:
                try:
                    if log_message:
                        log_message[0](log_message[1])
                    return func(*args, **kwargs)
                except catch as error:
                    if not remaining:
                        if not infinite_retries:
                            raise
                        remaining = list(waits)
                    if not retriable(error):
                        raise
                    interval = remaining.pop(0)
                    logger.warning("Error in %s: %s. Retrying after %s s...", func, error, interval)
                    time.sleep(interval)
                    for step in prepare or ():
                        step(*args, **kwargs)

        return call

    return decorate


retry_flaky_test = functools.partial(retry, intervals=[1, 1, 1])


def _boto_field(e: BaseException, attributes: tuple[str, ...], field: str) -> str:
    """A text attribute of a boto 2 error, or a field of a boto 3 error's response; '' if neither."""
    for attribute in attributes:
        value = getattr(e, attribute, None)
        if isinstance(value, str):
            return value
    response: Any = getattr(e, "response", None)
    value = response.get("Error", {}).get(field) if hasattr(response, "get") else None
    return value if isinstance(value, str) else ""


def get_error_code(e: BaseException) -> str:
    """A boto error's code name ('NoSuchBucket'); '' for other errors."""
    return _boto_field(e, ("error_code", "code"), "Code")


def get_error_message(e: BaseException) -> str:
    """A boto error's message; '' for other errors."""
    return _boto_field(e, ("error_message",), "Message")


def get_error_status(e: BaseException) -> int:
    """The HTTP status of an HTTP error of urllib, http.client, urllib3, requests or boto; 0 otherwise."""
    if hasattr(e, "status"):
        return int(str(e.status).strip())
    response: Any = getattr(e, "response", None)
    if hasattr(response, "status_code"):
        return int(str(response.status_code).strip())
    if hasattr(response, "get"):
        return int(str(response.get("ResponseMetadata", {}).get("HTTPStatusCode")).strip())
    if hasattr(e, "code"):
        return int(str(e.code).strip())
    return 0


def meets_error_message_condition(e: BaseException, error_message: str | None) -> bool:
    if not error_message:
        return True
    texts = [str(e), str(getattr(e, "msg", "")), str(getattr(e, "reason", "")),
             "".join(traceback.format_exception(e))]
    return any(error_message in text for text in texts)


def meets_error_code_condition(e: BaseException, error_codes: list[int] | None) -> bool:
    return not error_codes or get_error_status(e) in error_codes


def meets_boto_error_code_condition(e: BaseException, boto_error_codes: list[str] | None) -> bool:
    return not boto_error_codes or get_error_code(e) in boto_error_codes


def error_meets_conditions(e: BaseException, error_conditions: Iterable[ErrorCondition]) -> bool:
    """Whether ``e`` should be retried: some condition of its type matches, and none that
    matches says not to retry."""
    met = False
    for condition in error_conditions:
        if _matches(e, condition):
            if not condition.retry_on_this_condition:
                return False
            met = True
    return met


def _matches(e: BaseException, condition: ErrorCondition) -> bool:
    """Whether ``e`` is of the condition's type and meets each of its (at least one) requirements."""
    if not isinstance(e, condition.error):
        return False
    if not (condition.error_codes or condition.boto_error_codes or condition.error_message_must_include):
        return False
    return (meets_error_message_condition(e, condition.error_message_must_include)
            and meets_error_code_condition(e, condition.error_codes)
            and meets_boto_error_code_condition(e, condition.boto_error_codes))


def old_retry(
    delays: Iterable[float] = DEFAULT_DELAYS,
    timeout: float = DEFAULT_TIMEOUT,
    predicate: Callable[[Exception], bool] = lambda e: False,
) -> Iterator[contextlib.AbstractContextManager[None]]:
    """Deprecated in Toil: yields one context manager per attempt::

        for attempt in old_retry(delays=[0, 1], timeout=30, predicate=lambda e: isinstance(e, OSError)):
            with attempt:
                do_it()

    An attempt that raises an error ``predicate`` accepts is followed by another after the next
    delay (the last one repeats) while ``timeout`` seconds have not passed; otherwise the error is
    raised. With ``timeout`` 0 there is exactly one attempt.
    """
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    if timeout <= 0:
        yield contextlib.nullcontext()
        return
    expiration = time.time() + timeout
    finished: list[bool] = []

    @contextlib.contextmanager
    def attempt(delay: float) -> Iterator[None]:
        try:
            yield
        except Exception as error:
            if time.time() + delay >= expiration:
                logger.error("Got %s and no time is left to retry", error)
                raise
            if not predicate(error):
                logger.error("Got a %s: %s which is not retriable according to %s", type(error), error, predicate)
                raise
            logger.info("Got %s, trying again in %is.", error, delay)
            time.sleep(delay)
        else:
            finished.append(True)

    remaining = iter(delays)
    delay = next(remaining)
    while not finished:
        yield attempt(delay)
        delay = next(remaining, delay)

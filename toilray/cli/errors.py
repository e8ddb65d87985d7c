"""How the ``toilray`` commands report mistakes: the rule of ``toilray.exceptions.exit_status``,
the same as for a workflow script run with ``python``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from toilray.exceptions import USAGE_ERROR, error_report, report

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(command: F) -> F:
    """Turn toilray's own errors (and a Ctrl-C) into one line on stderr and their exit status."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except FileNotFoundError as exc:
            # A file named on the command line (a --html page, a --localFilePath) is not there.
            click.echo(error_report(exc), err=True)
            raise SystemExit(USAGE_ERROR) from None
        except (Exception, KeyboardInterrupt) as exc:
            status = report(exc)
            if status is None:
                raise
            raise SystemExit(status) from None

    return wrapper  # type: ignore[return-value]

"""How the ``toilray`` commands report mistakes: one line and a non-zero exit status."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from toilray.exceptions import FailedJobsException, ToilrayError, WorkflowKilledException

F = TypeVar("F", bound=Callable[..., Any])

# Exit status for mistakes a user makes (bad store, bad file, bad option), as click uses.
USAGE_ERROR = 2


def user_errors(command: F) -> F:
    """Turn toilray's own errors into one line on stderr and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (FailedJobsException, WorkflowKilledException) as exc:
            # Not a usage mistake: the workflow ran and did not finish.
            click.echo(f"toilray: error: {exc}", err=True)
            raise SystemExit(1) from None
        except (ToilrayError, FileNotFoundError) as exc:
            click.echo(f"toilray: error: {exc}", err=True)
            raise SystemExit(USAGE_ERROR) from None

    return wrapper  # type: ignore[return-value]

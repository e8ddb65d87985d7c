"""``toilray run FLOW.py [JOBSTORE] [options]``: run a workflow script.

A Toil-style script (with its own ``if __name__ == "__main__":`` block) runs as it is, as if
started with ``python``. A script that only builds a root job at module level (a ``Job``
named ``root``) is imported and toilray starts that job with the options given.

Everything after SCRIPT goes to the script, ``--help`` included; ``toilray run --help`` lists the
workflow options too, since they are what a user passes there.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import runpy
import sys
import time

import click

from toilray.cli.errors import user_errors
from toilray.exceptions import ToilrayError
from toilray.options import add_toil_options

_MAIN_GUARD = re.compile(r"""^if\s+__name__\s*==\s*["']__main__["']\s*:""", re.MULTILINE)


class ScriptError(ToilrayError):
    """The workflow script cannot be used (missing, not Python, no workflow in it)."""


def _check_script(path: str) -> str:
    if not os.path.isfile(path):
        raise ScriptError(f"No such workflow script: {path}")
    with open(path, encoding="utf-8", errors="replace") as handle:
        source = handle.read()
    try:
        compile(source, path, "exec")
    except SyntaxError as exc:
        raise ScriptError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    return source


def _split_job_store(args: tuple[str, ...], script: str) -> tuple[str, list[str], bool]:
    """The job store (the first bare argument) and the rest; a default store if none is given."""
    if args and not args[0].startswith("-"):
        return args[0], list(args[1:]), False
    stem = os.path.splitext(os.path.basename(script))[0]
    store = os.path.abspath(os.path.join("toilray-stores", f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"))
    os.makedirs(os.path.dirname(store), exist_ok=True)
    return f"file:{store}", list(args), True


def _run_root_only(path: str, argv: list[str]) -> None:
    from toilray.common import Toil
    from toilray.job import Job

    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not name.isidentifier():
        raise ScriptError(f"{path} cannot be imported as a module (its name must be a Python identifier)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    root = getattr(module, "root", None)
    if not isinstance(root, Job):
        raise ScriptError(
            f"{path} has no 'if __name__ == \"__main__\":' block and no module-level Job named 'root' to start"
        )
    parser = Job.Runner.getDefaultArgumentParser()
    options = parser.parse_args(argv)
    with Toil(options) as toil:
        result = toil.restart() if options.restart else toil.start(root)
    if result is not None:
        click.echo(result)


class _RunCommand(click.Command):
    """``toilray run``, whose help also lists the workflow options ARGS may hold."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        parser = argparse.ArgumentParser(prog="toilray run SCRIPT", usage=argparse.SUPPRESS, add_help=False)
        add_toil_options(parser)
        formatter.write("\nWorkflow options (ARGS; a Toil-style script may add its own, shown by "
                        "'toilray run SCRIPT --help'):\n\n")
        formatter.write(parser.format_help())


@click.command(cls=_RunCommand,
               context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("script")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@user_errors
def run(script: str, args: tuple[str, ...]) -> None:
    """Run the workflow SCRIPT with a job store and Toil options (ARGS).

    ARGS starts with the job store (file:PATH, a plain path, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX;
    default: a new one under ./toilray-stores); everything after SCRIPT is passed to the script.
    """
    source = _check_script(script)
    store, rest, defaulted = _split_job_store(args, script)
    if defaulted:
        click.echo(f"toilray: job store: {store}", err=True)
    argv = [store, *rest]
    try:
        if _MAIN_GUARD.search(source):
            sys.argv = [script, *argv]
            sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
            runpy.run_path(script, run_name="__main__")
        else:
            _run_root_only(script, argv)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise

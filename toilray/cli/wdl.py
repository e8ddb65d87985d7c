"""``toilray wdl``: the same as ``toilray-wdl-runner``."""

from __future__ import annotations

import click


@click.command("wdl", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                        "help_option_names": []})
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def wdl(arguments: tuple[str, ...]) -> None:
    """Run a WDL workflow: toilray wdl [OPTIONS] WORKFLOW.wdl [INPUTS.json] (see --help)."""
    import sys

    from toilray.wdl.main import run

    sys.argv[1:] = list(arguments)
    run()

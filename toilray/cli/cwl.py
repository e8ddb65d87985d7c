"""``toilray cwl``: the same as ``toilray-cwl-runner``."""

from __future__ import annotations

import click


@click.command("cwl", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                        "help_option_names": []})
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def cwl(arguments: tuple[str, ...]) -> None:
    """Run a CWL workflow: toilray cwl [OPTIONS] WORKFLOW.cwl [JOB.yml] (see --help)."""
    import sys

    from toilray.cwl.main import run

    sys.argv[1:] = list(arguments)
    run()

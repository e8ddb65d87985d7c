"""The ``toilray`` command: run workflows and inspect or manage job stores."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="toilray")
def main() -> None:
    """toilray: Toil workflows on Ray."""


def _register() -> None:
    from toilray.cli import cache, cwl, debug, hpc, manage, run, server, submit, wdl

    main.add_command(run.run)
    main.add_command(submit.submit)
    main.add_command(manage.status)
    main.add_command(manage.clean)
    main.add_command(manage.kill)
    main.add_command(debug.debug_job)
    main.add_command(debug.debug_file)
    main.add_command(manage.local_ray_group)
    main.add_command(manage.stats)
    main.add_command(cwl.cwl)
    main.add_command(server.server)
    main.add_command(cache.cache_group)
    main.add_command(wdl.wdl)
    main.add_command(hpc.hpc_command)


_register()

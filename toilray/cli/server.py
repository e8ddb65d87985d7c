"""``toilray server``: the GA4GH WES server (``toilray.server``), with Toil's options.

Needs the ``server`` extra (``pip install 'toilray[server]'``).
"""

from __future__ import annotations

import logging
import os

import click

from toilray.cli.errors import user_errors
from toilray.exceptions import ToilrayError


class ServerUnavailableError(ToilrayError):
    """The server's packages (the ``server`` extra) are not installed."""


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The interface to listen on.")
@click.option("--port", type=int, default=8080, show_default=True, help="The port to listen on.")
@click.option("--work_dir", "work_dir", default="./workflows", show_default=True,
              help="Where runs live: one directory per run (attachments, outputs, job store, logs).")
@click.option("--state_store", "state_store", default=None,
              help="The directory of the server's state (a SQLite file). [default: --work_dir]")
@click.option("--opt", "-o", "opts", multiple=True,
              help="A default option for every run's runner (repeatable; options with a value use '=': "
                   "--opt=--logLevel=INFO).")
@click.option("--dest_bucket_base", default=None,
              help="Copy each CWL run's outputs under URL/RUN_ID (s3://, gs://, any fsspec URL).")
@click.option("--cors", is_flag=True, help="Allow cross-origin requests (from --cors_origins).")
@click.option("--cors_origins", default="*", show_default=True, help="The origins --cors allows, comma-separated.")
@click.option("--swagger_ui", is_flag=True, help="Serve the Swagger UI at /ga4gh/wes/v1/ui.")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=2, show_default=True,
              help="How many runs execute at once; later ones wait as QUEUED.")
@click.option("--rayAddress", "ray_address", default=None,
              help="Run the workflows on this Ray cluster (default: the local Ray toilray shares).")
@click.option("--token-file", "token_file", type=click.Path(dir_okay=False), default=None,
              help="A file holding the bearer token clients must send (default: $TOILRAY_WES_TOKEN).")
@click.option("--insecure-no-auth", "no_auth", is_flag=True,
              help="Serve without authentication (only on a loopback --host).")
@click.option("--max_upload", "max_upload", type=click.IntRange(min=1), default=100 * 1024 * 1024,
              show_default=True, help="The largest request body (attachments and all) in bytes.")
@click.option("--debug", is_flag=True, help="Log the server's requests and decisions.")
@user_errors
def server(host: str, port: int, work_dir: str, state_store: str | None, opts: tuple[str, ...],
           dest_bucket_base: str | None, cors: bool, cors_origins: str, swagger_ui: bool, workers: int,
           ray_address: str | None, token_file: str | None, no_auth: bool, max_upload: int, debug: bool) -> None:
    """Serve the GA4GH Workflow Execution Service API (1.1) at http://HOST:PORT/ga4gh/wes/v1."""
    try:
        import uvicorn

        from toilray.server.app import check_listen, create_app, read_token
        from toilray.server.runs import RunManager, ServerSettings
    except ImportError as exc:
        raise ServerUnavailableError(
            f"toilray server needs the 'server' extra (pip install 'toilray[server]'): {exc}") from None
    token = None if no_auth else read_token(token_file)
    if token is None and not no_auth:
        raise ServerUnavailableError(
            "no token: give --token-file FILE or set TOILRAY_WES_TOKEN (or --insecure-no-auth on loopback)")
    check_listen(host, token)
    work = os.path.abspath(work_dir)
    settings = ServerSettings(work_dir=work, state_store=os.path.abspath(state_store or work), workers=workers,
                              default_options=opts, ray_address=ray_address, dest_bucket_base=dest_bucket_base,
                              max_upload_bytes=max_upload)
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(asctime)s %(message)s")
    manager = RunManager(settings)
    app = create_app(manager, token, swagger_ui=swagger_ui,
                     cors_origins=[o.strip() for o in cors_origins.split(",")] if cors else None)
    manager.start()
    try:
        uvicorn.run(app, host=host, port=port, log_level="debug" if debug else "info")
    finally:
        manager.stop()

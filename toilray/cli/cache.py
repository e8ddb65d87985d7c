"""``toilray cache list|prune|clear LOCATOR``: what the call cache (``--callCache``) holds."""

from __future__ import annotations

import time

import click

from toilray.callCache import CallCache, CallCacheError
from toilray.cli.errors import user_errors
from toilray.lib.conversions import human2bytes, readable_size


def _open(locator: str) -> CallCache:
    cache = CallCache(locator, create=False)
    if not cache.exists():
        raise CallCacheError(f"No call cache at {locator}")
    return cache


@click.group("cache")
def cache_group() -> None:
    """The call cache of --callCache (a path, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX)."""


@cache_group.command("list")
@click.argument("locator")
@user_errors
def cache_list(locator: str) -> None:
    """List the entries of the call cache at LOCATOR, oldest first, with their sizes."""
    cache = _open(locator)
    entries = sorted(cache.entries(), key=lambda info: info.created)
    for info in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.created)) if info.created else "-"
        click.echo(f"{info.key[:16]}  {when}  {readable_size(info.size):>10}  {info.files:4d} file(s)  {info.name}")
    blobs = cache.blob_sizes()
    click.echo(f"total: {len(entries)} entries, {len(blobs)} distinct file(s), "
               f"{readable_size(sum(blobs.values()))} of file contents")


@cache_group.command("prune")
@click.argument("locator")
@click.option("--older-than", "older_than", type=float, default=None, metavar="DAYS",
              help="Remove the entries made more than DAYS days ago.")
@click.option("--max-size", "max_size", default=None, metavar="SIZE",
              help="Then remove the oldest entries until what is left takes at most SIZE (such as 10G).")
@user_errors
def cache_prune(locator: str, older_than: float | None, max_size: str | None) -> None:
    """Remove old or corrupt entries, and the file contents no entry needs any more."""
    cache = _open(locator)
    limit = None if max_size is None else human2bytes(max_size)
    entries = sorted(cache.entries(), key=lambda info: info.created)
    removed = 0
    cutoff = None if older_than is None else time.time() - older_than * 86400
    kept = []
    for info in entries:
        if info.created == 0.0 or (cutoff is not None and info.created < cutoff):
            cache.delete_entry(info.key)
            removed += 1
        else:
            kept.append(info)
    if limit is not None:
        total = sum(cache.blob_sizes().values()) + sum(info.size for info in kept)
        for info in kept:
            if total <= limit:
                break
            cache.delete_entry(info.key)
            removed += 1
            total -= info.size
    blobs, freed = cache.collect_garbage()
    click.echo(f"pruned {removed} entries and {blobs} file(s) no entry needs ({readable_size(freed)})")


@cache_group.command("clear")
@click.argument("locator")
@user_errors
def cache_clear(locator: str) -> None:
    """Delete the call cache at LOCATOR and everything in it."""
    CallCache(locator, create=False).clear()
    click.echo(f"Deleted the call cache at {locator}")

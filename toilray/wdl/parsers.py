"""miniwdl's parsers, kept on disk between runs.

A process that parses its first WDL document of a version has miniwdl build a LALR parser for
that version's grammar: lark's grammar analysis, 0.4-0.7 s of every toilray-wdl-runner run and
most of loading a document. Lark keeps a parser it built in a file when asked (its ``cache``
option); miniwdl does not ask. ``keep_on_disk`` makes the parsers miniwdl builds from then on
use a file each in toilray's state directory, so only the first run of a version builds one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import types
from typing import Any

import lark

from toilray.installation import state_dir


def cache_dir() -> str:
    return os.path.join(state_dir(), "wdl-parsers")


class _LarkKeepingParsers(types.ModuleType):
    """The ``lark`` module as miniwdl's parser sees it, its ``Lark`` given a cache file."""

    def __init__(self, directory: str) -> None:
        super().__init__(lark.__name__)
        self._directory = directory

    def __getattr__(self, name: str) -> Any:
        return getattr(lark, name)

    def Lark(self, grammar: str, **options: Any) -> lark.Lark:
        # Lark checks a digest of the grammar, its options and the lark and Python versions
        # stored in the file; naming the file by them too keeps each parser's file its own.
        key = hashlib.sha256(
            f"{lark.__version__}\0{sys.version_info[:2]}\0{options.get('start')}\0{grammar}".encode()).hexdigest()
        path = os.path.join(self._directory, f"{key[:32]}.lark")
        if os.path.exists(path):
            return lark.Lark(grammar, cache=path, **options)
        # Lark writes its file in place: written beside it and renamed, another run reading
        # the file finds it whole or absent.
        partial = f"{path}.{os.getpid()}.tmp"
        parser = lark.Lark(grammar, cache=partial, **options)
        with contextlib.suppress(OSError):  # not written (a read-only home): the next run builds it again
            os.replace(partial, path)
        return parser


def keep_on_disk() -> None:
    """Have miniwdl's parsers built from now on kept in (and read from) ``cache_dir()``."""
    from WDL import _parser

    if not isinstance(_parser.lark, _LarkKeepingParsers):
        directory = cache_dir()
        with contextlib.suppress(OSError):
            os.makedirs(directory, exist_ok=True)
        _parser.lark = _LarkKeepingParsers(directory)

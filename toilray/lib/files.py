"""Local file helpers shared by the storage back ends and the runners."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from typing import Any

# Errors after which a hard link is impossible here but a copy will do.
_NO_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP)


def link_or_copy(source: str, destination: str, allow_link: bool) -> bool:
    """Hard-link ``source`` to ``destination`` where allowed and possible, else copy it.

    Returns True if it copied (the caller then sets the copy's mode).
    """
    if allow_link:
        try:
            os.link(source, destination)
            return False
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
    shutil.copyfile(source, destination)
    return True


def build_tree(entries: dict[str, str | None], root: str, fetch: Callable[[str, str], Any]) -> None:
    """Lay out a directory manifest under ``root``: a ``None`` entry is a directory, any other
    is a stored file's ID, which ``fetch(file_id, destination)`` writes."""
    os.makedirs(root, exist_ok=True)
    for rel, file_id in entries.items():
        dest = os.path.join(root, rel)
        if file_id is None:
            os.makedirs(dest, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            fetch(file_id, dest)

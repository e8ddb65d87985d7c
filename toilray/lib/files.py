"""Local file helpers shared by the storage back ends."""

from __future__ import annotations

import errno
import os
import shutil

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

"""Writing a run's uploaded files inside its directory, and nowhere else.

A client names each attachment's place (the multipart ``filename``, which may hold folders:
``inputs/test.fasta``). A name that is absolute, climbs out with ``..``, or passes through a
symbolic link is refused before anything is written; files are created with ``O_NOFOLLOW`` and
``O_EXCL`` so that nothing already there is followed or overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import BinaryIO

from toilray.exceptions import ToilrayError

CHUNK = 1 << 20


class AttachmentError(ToilrayError):
    """An attachment's name or size is not acceptable (the client's mistake: HTTP 400 or 413)."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def safe_relative(name: str) -> str:
    """``name`` as a normalised path relative to a run's directory; AttachmentError if it leaves it."""
    if not name or "\x00" in name:
        raise AttachmentError("an attachment has no file name")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise AttachmentError(f"attachment name {name!r} is absolute; give a path inside the run's directory")
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise AttachmentError(f"attachment name {name!r} leaves the run's directory")
    return "/".join(parts)


def inside(root: str, relative: str) -> str:
    """The real path of ``relative`` under ``root``; AttachmentError if a link leads it out."""
    real_root = os.path.realpath(root)
    target = os.path.realpath(os.path.join(real_root, relative))
    if os.path.commonpath([real_root, target]) != real_root:
        raise AttachmentError(f"{relative!r} leads out of the run's directory")
    return target


def write_attachments(root: str, files: Iterable[tuple[str, BinaryIO]], max_bytes: int) -> list[str]:
    """Write each (name, stream) under ``root``; at most ``max_bytes`` in all. The names written."""
    items = [(safe_relative(name), stream) for name, stream in files]
    seen: set[str] = set()
    for relative, _ in items:
        if relative in seen:
            raise AttachmentError(f"two attachments are named {relative!r}")
        seen.add(relative)
    total = 0
    for relative, stream in items:
        folder = os.path.dirname(relative)
        if folder:
            inside(root, folder)
            os.makedirs(os.path.join(root, folder), exist_ok=True)
        path = inside(root, relative)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(descriptor, "wb") as handle:
            while chunk := stream.read(CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise AttachmentError(f"the attachments exceed the limit of {max_bytes} bytes", too_large=True)
                handle.write(chunk)
    return [relative for relative, _ in items]

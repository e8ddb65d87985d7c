"""The podman command miniwdl runs in the WDL benchmark (its ``[podman] exe``): podman itself,
except that ``pull`` of an image already on this node does nothing.

miniwdl pulls every task's image before running it, and podman's ``pull`` always asks the
registry, failing where none can be reached (as here) even though the image is right here.
toilray's podman back end makes no ``pull`` call (``toilray.backends.tasks.podman``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def main() -> None:
    podman = shutil.which("podman") or "podman"
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "pull":
        present = subprocess.run([podman, "image", "exists", args[1]], capture_output=True, check=False)
        if present.returncode == 0:
            sys.exit(0)
    os.execvp(podman, [podman, *args])


if __name__ == "__main__":
    main()

"""The leader of a CWL run of the WES server: ``toilray-cwl-runner`` with its output object in a file.

``python -m toilray.server.cwl_leader OUTPUTS.json RUNNER-ARGS...``: the runner prints the output
object on stdout; here that goes to ``OUTPUTS.json.part``, renamed to ``OUTPUTS.json`` when the
run succeeded, and then ``OUTPUTS.json.done`` marks it whole (what a restarted server checks for
a run that ended while it was down). With $TOILRAY_WES_DESTINATION (the server's
``--dest_bucket_base`` and the run's ID), the outputs are copied there first (any fsspec URL),
and the output object names them there.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

DESTINATION_VARIABLE = "TOILRAY_WES_DESTINATION"


def publish(outdir: str, destination: str) -> None:
    """Copy every file under ``outdir`` to the same relative place under ``destination``."""
    import fsspec

    filesystem, root = fsspec.core.url_to_fs(destination)
    for folder, _, names in os.walk(outdir):
        for name in names:
            local = os.path.join(folder, name)
            filesystem.put_file(local, root.rstrip("/") + "/" + os.path.relpath(local, outdir))


def relocate(value: Any, outdir: str, destination: str) -> Any:
    """The output object with locations under ``outdir`` moved under ``destination`` (and no local paths)."""
    prefix = "file://" + os.path.abspath(outdir).rstrip("/") + "/"
    if isinstance(value, dict):
        moved = {key: relocate(item, outdir, destination) for key, item in value.items() if key != "path"}
        location = moved.get("location")
        if isinstance(location, str) and location.startswith(prefix):
            moved["location"] = destination.rstrip("/") + "/" + location[len(prefix):]
        elif "path" in value:
            moved["path"] = value["path"]
        return moved
    if isinstance(value, list):
        return [relocate(item, outdir, destination) for item in value]
    return value


def main() -> None:
    from toilray.cwl.main import quick_exit, reported_main

    target = sys.argv[1]
    partial = target + ".part"
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(descriptor, sys.stdout.fileno())
    os.close(descriptor)
    argv = sys.argv[2:]
    sys.argv = ["toilray-cwl-runner", *argv]
    try:
        code = reported_main(argv)
    except SystemExit as exc:
        # argparse's answer to a bad option.
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    destination = os.environ.get(DESTINATION_VARIABLE)
    if code == 0 and destination:
        outdir = next(arg.split("=", 1)[1] for arg in argv if arg.startswith("--outdir="))
        publish(outdir, destination)
        with open(partial, encoding="utf-8") as handle:
            output = relocate(json.load(handle), outdir, destination)
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(output, handle)
    if code == 0:
        os.replace(partial, target)
        with open(target + ".done", "w", encoding="ascii"):
            pass
    quick_exit(code)


if __name__ == "__main__":
    main()

"""Jobs with display names: list three directories in a chain of ``discoverFiles`` jobs.

    python examples/discoverfiles.py file:my-job-store [--stats] [--paths DIR DIR DIR]

As in the manual, the first job is named ``sysFiles`` and the second ``userFiles`` for
``toil stats``; the third keeps the default, its class name ``discoverFiles``. The manual lists
``/sys/``, the home directory and ``/tmp/``; ``--paths`` picks other directories. Each job
runs ``ls`` on its directory and returns its display name and the listing, which the script
prints as JSON.

The script sets ``clean = "always"``; with ``--stats`` the job store is kept anyway, so that
the statistics can be read afterwards.
"""

import json
import os
import subprocess
from typing import Any

from toilray.common import Toil
from toilray.job import Job


# The manual's lower-case class name is kept: it is the default displayName shown by stats.
class discoverFiles(Job):  # noqa: N801
    """Views files at a specified path using ls."""

    def __init__(self, path: str, *args: Any, **kwargs: Any) -> None:
        self.path = path
        super().__init__(*args, **kwargs)

    def run(self, fileStore: Any) -> dict[str, Any]:
        listing: list[str] = []
        if os.path.exists(self.path):
            listed = subprocess.run(["ls", "-1", self.path], check=True, capture_output=True, text=True)
            listing = listed.stdout.splitlines()
        return {"displayName": self.displayName, "path": self.path, "files": listing}


def chain(job: Job, paths: list[str]) -> list[Any]:
    job1 = discoverFiles(path=paths[0], displayName="sysFiles", memory="100M", cores=0.1)
    job2 = discoverFiles(path=paths[1], displayName="userFiles", memory="100M", cores=0.1)
    job3 = discoverFiles(path=paths[2], memory="100M", cores=0.1)

    job.addChild(job1)
    job1.addChild(job2)
    job2.addChild(job3)
    return [job1.rv(), job2.rv(), job3.rv()]


def main() -> None:
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--paths", nargs=3, metavar="DIR",
                        default=["/sys/", os.path.expanduser("~"), "/tmp/"],
                        help="The three directories to list.")
    options = parser.parse_args()
    options.clean = "always"

    with Toil(options) as toil:
        if not toil.options.restart:
            listings = toil.start(Job.wrapJobFn(chain, [os.path.abspath(p) for p in options.paths],
                                                memory="100M", cores=0.1))
        else:
            listings = toil.restart()
    print(json.dumps(listings))


if __name__ == "__main__":
    main()

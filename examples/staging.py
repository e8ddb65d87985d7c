"""Staging files into and out of the job store around a workflow.

    python examples/staging.py file:my-job-store IN_FILE OUT_FILE [--restart]

``IN_FILE`` is imported with ``toil.importFile`` before the workflow starts, ``HelloWorld``
streams it through and appends ``World!``, and the result is exported to ``OUT_FILE`` with
``toil.exportFile``. Both may be relative paths (resolved against the directory the script
was launched from) or ``file://`` URLs. On ``--restart`` the input is not imported again:
imported files persist in the job store.
"""

from typing import Any

from toilray.common import Toil
from toilray.fileStores import FileID
from toilray.job import Job


class HelloWorld(Job):
    def __init__(self, inputFileID: FileID) -> None:
        Job.__init__(self, memory="500M", cores=1, disk="500M")
        self.inputFileID = inputFileID

    def run(self, fileStore: Any) -> FileID:
        with fileStore.readGlobalFileStream(self.inputFileID, encoding="utf-8") as fi, \
                fileStore.writeGlobalFileStream(encoding="utf-8") as (fo, outputFileID):
            fo.write(fi.read() + "World!")
        return outputFileID


def main() -> None:
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("inputFile", help="The file to import (path or file:// URL).")
    parser.add_argument("outputFile", help="Where to export the result (path or file:// URL).")
    options = parser.parse_args()

    with Toil(options) as toil:
        if not toil.options.restart:
            inputFileID = toil.importFile(options.inputFile)
            outputFileID = toil.start(HelloWorld(inputFileID))
        else:
            outputFileID = toil.restart()
        toil.exportFile(outputFileID, options.outputFile)
    print(f"exported: {options.outputFile}")


if __name__ == "__main__":
    main()

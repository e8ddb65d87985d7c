"""The manual's merge sort: split a file recursively with children, merge with follow-ons.

    python examples/sort.py file:my-job-store [--numLines 200000] [--lineLength 50]
        [--fileToSort IN] [--outputFile OUT] [--N BYTES] [--restart] [--overwriteOutput BOOL]

Without ``--fileToSort`` a file of ``--numLines`` random lines is generated as
``fileToSort.txt`` in the current directory (an existing one is sorted again). The sorted
result is exported to ``--outputFile`` (default ``sortedFile.txt``).

Two options exist for trying out failure and restart:

* ``--faultFile FILE``: while FILE exists, every merge (``up``) job whose path in the
  recursion (``root/up``, ``root/0/up``, ...) is a line of FILE fails. Deleting the file
  "fixes the bug", and ``--restart`` then finishes the workflow. The check reads the file when
  the job runs, so it works although restarted jobs keep the options they were created with.
* ``--countDir DIR``: every job execution creates a new empty file in DIR named after the
  job's kind and path, so that how often each job ran can be counted afterwards.
"""

import argparse
import codecs
import os
import random
import shutil
import string
import uuid
from typing import IO

from toilray.common import Toil
from toilray.fileStores import FileID
from toilray.job import Job
from toilray.lib.conversions import human2bytes
from toilray.realtimeLogger import RealtimeLogger

DEFAULT_LINES = 200000
DEFAULT_LINE_LEN = 50
SORT_MEMORY = human2bytes("600M")


def makeFileToSort(fileName: str, lines: int = DEFAULT_LINES, lineLen: int = DEFAULT_LINE_LEN) -> None:
    with open(fileName, "w") as fileHandle:
        for _ in range(lines):
            line = "".join(random.choice(string.ascii_lowercase + " ") for _ in range(lineLen - 1)) + "\n"
            fileHandle.write(line)


def getMidPoint(file: str, fileStart: int, fileEnd: int) -> int:
    """The offset of the last newline at or before the middle of the range, so that
    splitting after it keeps lines whole; if there is none, the first one after."""
    with open(file, "rb") as fileHandle:
        midPoint = (fileStart + fileEnd) // 2
        assert midPoint >= fileStart
        fileHandle.seek(midPoint)
        line = fileHandle.readline()
        assert len(line) >= 1
        if len(line) + midPoint < fileEnd:
            return midPoint + len(line) - 1
        fileHandle.seek(fileStart)
        line = fileHandle.readline()
        assert len(line) >= 1
        assert len(line) + fileStart <= fileEnd
        return len(line) + fileStart - 1


def copySubRangeOfFile(inputFile: str, fileStart: int, fileEnd: int) -> str:
    """The bytes of ``inputFile`` from ``fileStart`` up to (not including) ``fileEnd``."""
    with open(inputFile, "rb") as fileHandle:
        fileHandle.seek(fileStart)
        data = fileHandle.read(fileEnd - fileStart)
        assert len(data) == fileEnd - fileStart
        return data.decode()


def sort(file: str) -> None:
    """Sort the lines of ``file`` in place."""
    with open(file) as fileHandle:
        lines = fileHandle.readlines()
    lines.sort()
    with open(file, "w") as fileHandle:
        fileHandle.writelines(lines)


def merge(fileHandle1: IO[str], fileHandle2: IO[str], outputFileHandle: IO[str]) -> None:
    """Merge two sorted streams of lines into ``outputFileHandle``."""
    line2 = fileHandle2.readline()
    for line1 in fileHandle1:
        while line2 != "" and line2 <= line1:
            outputFileHandle.write(line2)
            line2 = fileHandle2.readline()
        outputFileHandle.write(line1)
    while line2 != "":
        outputFileHandle.write(line2)
        line2 = fileHandle2.readline()


def countExecution(options: argparse.Namespace, kind: str, path: str) -> None:
    if options.countDir:
        name = f"{kind}-{path.replace('/', '_')}-{uuid.uuid4().hex}"
        open(os.path.join(options.countDir, name), "w").close()


def injectedFault(options: argparse.Namespace, path: str) -> bool:
    if not options.faultFile or not os.path.exists(options.faultFile):
        return False
    with open(options.faultFile) as fileHandle:
        return path in {line.strip() for line in fileHandle}


def setup(job: Job, inputFile: FileID, N: int, downCheckpoints: bool, options: argparse.Namespace) -> FileID:
    """Sets up the sort. Returns the FileID of the sorted file."""
    RealtimeLogger.info("Starting the merge sort")
    countExecution(options, "setup", "root")
    return job.addChildJobFn(down, inputFile, N, "root", downCheckpoints, options=options,
                             preemptible=True, memory=options.sortMemory).rv()


def down(job: Job, inputFileStoreID: FileID, N: int, path: str, downCheckpoints: bool,
         options: argparse.Namespace, memory: int = SORT_MEMORY) -> FileID:
    """Split a file larger than N bytes in two, sort both halves recursively and merge them in
    a follow-on; sort a smaller file directly. Returns the sorted file's ID (or a promise)."""
    RealtimeLogger.info(f"Down job starting: {path}")
    inputFile = job.fileStore.readGlobalFile(inputFileStoreID, cache=False)
    length = os.path.getsize(inputFile)
    if length > N:
        countExecution(options, "split", path)
        RealtimeLogger.critical(f"Splitting file: {inputFileStoreID} of size: {length}")
        midPoint = getMidPoint(inputFile, 0, length)
        t1 = job.fileStore.getLocalTempFile()
        with open(t1, "w") as fileHandle:
            fileHandle.write(copySubRangeOfFile(inputFile, 0, midPoint + 1))
        t2 = job.fileStore.getLocalTempFile()
        with open(t2, "w") as fileHandle:
            fileHandle.write(copySubRangeOfFile(inputFile, midPoint + 1, length))
        # Giving the two halves' rv() to the follow-on states the dependency without
        # serialising anything: the halves still sort in parallel.
        result = job.addFollowOnJobFn(
            up,
            job.addChildJobFn(down, job.fileStore.writeGlobalFile(t1), N, path + "/0", downCheckpoints,
                              checkpoint=downCheckpoints, options=options, preemptible=True,
                              memory=options.sortMemory).rv(),
            job.addChildJobFn(down, job.fileStore.writeGlobalFile(t2), N, path + "/1", downCheckpoints,
                              checkpoint=downCheckpoints, options=options, preemptible=True,
                              memory=options.mergeMemory).rv(),
            path + "/up", preemptible=True, options=options, memory=options.sortMemory,
        ).rv()
    else:
        countExecution(options, "sort", path)
        RealtimeLogger.critical(f"Sorting file: {inputFileStoreID} of size: {length}")
        shutil.copyfile(inputFile, inputFile + ".sort")
        sort(inputFile + ".sort")
        result = job.fileStore.writeGlobalFile(inputFile + ".sort")
    RealtimeLogger.info(f"Down job finished: {path}")
    return result


def up(job: Job, inputFileID1: FileID, inputFileID2: FileID, path: str, options: argparse.Namespace,
       memory: int = SORT_MEMORY) -> FileID:
    """Merge the two sorted files into a new one."""
    RealtimeLogger.info(f"Up job starting: {path}")
    countExecution(options, "up", path)
    if injectedFault(options, path):
        raise RuntimeError(f"Injected fault in the merge {path}")
    with job.fileStore.writeGlobalFileStream() as (fileHandle, outputFileStoreID):
        writer = codecs.getwriter("utf-8")(fileHandle)
        with job.fileStore.readGlobalFileStream(inputFileID1) as inputFileHandle1, \
                job.fileStore.readGlobalFileStream(inputFileID2) as inputFileHandle2:
            RealtimeLogger.info(f"Merging {inputFileID1} and {inputFileID2} to {outputFileStoreID}")
            merge(codecs.getreader("utf-8")(inputFileHandle1), codecs.getreader("utf-8")(inputFileHandle2), writer)
        # These deletions take effect only once this job has finished successfully, so a failed
        # merge can be rerun from the same inputs.
        job.fileStore.deleteGlobalFile(inputFileID1)
        job.fileStore.deleteGlobalFile(inputFileID2)
    RealtimeLogger.info(f"Up job finished: {path}")
    return outputFileStoreID


def parseBool(text: str) -> bool:
    return text.lower() in ("true", "yes", "1", "t", "y")


def main(options: argparse.Namespace | None = None) -> None:
    if not options:
        parser = argparse.ArgumentParser()
        Job.Runner.addToilOptions(parser)
        parser.add_argument("--numLines", default=DEFAULT_LINES, type=int, help="Number of lines in file to sort.")
        parser.add_argument("--lineLength", default=DEFAULT_LINE_LEN, type=int, help="Length of lines in file to sort.")
        parser.add_argument("--fileToSort", help="The file you wish to sort")
        parser.add_argument("--outputFile", help="Where the sorted output will go")
        parser.add_argument("--overwriteOutput", type=parseBool, default=True,
                            help="Write over the output file if it already exists.")
        parser.add_argument("--N", dest="N", type=int, default=10000,
                            help="The threshold below which a serial sort function is used to sort file. "
                                 "All lines must of length less than or equal to N or program will fail")
        parser.add_argument("--downCheckpoints", action="store_true",
                            help="Make checkpoints on the way through the recursive 'down' part of the sort")
        parser.add_argument("--sortMemory", dest="sortMemory", type=human2bytes, default=None,
                            help="Memory for jobs that sort chunks of the file.")
        parser.add_argument("--mergeMemory", dest="mergeMemory", type=human2bytes, default=None,
                            help="Memory for jobs that collate results.")
        parser.add_argument("--faultFile", default=None,
                            help="While this file exists, the merges whose paths it lists fail.")
        parser.add_argument("--countDir", default=None, help="Leave one file here per job execution.")
        options = parser.parse_args()
    if not getattr(options, "sortMemory", None):
        options.sortMemory = SORT_MEMORY
    if not getattr(options, "mergeMemory", None):
        options.mergeMemory = SORT_MEMORY
    # Jobs run in other directories, so they get absolute paths.
    for name in ("faultFile", "countDir"):
        if getattr(options, name, None):
            setattr(options, name, os.path.abspath(getattr(options, name)))

    sortedFileName = options.outputFile or "sortedFile.txt"
    if not options.overwriteOutput and os.path.exists(sortedFileName):
        print(f"Output file {sortedFileName} already exists.  "
              f"Delete it to run the sort example again or use --overwriteOutput=True")
        raise SystemExit(1)

    fileName = options.fileToSort
    if options.fileToSort is None:
        fileName = "fileToSort.txt"
        if os.path.exists(fileName):
            print(f"Sorting existing file: {fileName}")
        else:
            print(f"No sort file specified. Generating one automatically called: {fileName}.")
            makeFileToSort(fileName=fileName, lines=options.numLines, lineLen=options.lineLength)
    elif not os.path.exists(options.fileToSort):
        raise RuntimeError(f"File to sort does not exist: {options.fileToSort}")

    if int(options.N) <= 0:
        raise RuntimeError(f"Invalid value of N: {options.N}")

    with Toil(options) as workflow:
        sortedFileURL = "file://" + os.path.abspath(sortedFileName)
        if not workflow.options.restart:
            sortFileURL = "file://" + os.path.abspath(fileName)
            sortFileID = workflow.importFile(sortFileURL)
            sortedFileID = workflow.start(Job.wrapJobFn(setup, sortFileID, int(options.N), options.downCheckpoints,
                                                        options=options, memory=SORT_MEMORY))
        else:
            sortedFileID = workflow.restart()
        workflow.exportFile(sortedFileID, sortedFileURL)
    print(f"Sorted file written to: {os.path.abspath(sortedFileName)}")


if __name__ == "__main__":
    main()

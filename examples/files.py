"""Managing files in jobs: local scratch space and the global file store.

    python examples/files.py file:my-job-store

* ``LocalFileStoreJob`` uses ``self.tempDir`` and ``fileStore.getLocalTempFile()``: both exist
  while the job runs and are removed when it ends.
* ``globalFileStoreJobFn`` exercises writeGlobalFile (also of an executable file),
  writeGlobalFileStream with ``cleanup=True`` (binary, and text with ``encoding='utf-8'``),
  readGlobalFile (default and ``userPath=``), readGlobalFileStream (binary and text),
  getGlobalFileSize, ``FileID.size`` and deleteGlobalFile.
* ``readBack``, a child of that job, checks what a successor sees: the cleanup file is still
  there, the deleted one is gone, the executable bit survived.
* ``afterCleanup`` runs after that whole subgraph has finished: by then both cleanup files
  are gone, while the executable file, written without ``cleanup``, remains.

The observations are printed as one JSON object; the script also reports whether the local
scratch paths still exist once the workflow is over.
"""

import json
import os
import stat
from typing import Any

from toilray.common import Toil
from toilray.exceptions import NoSuchFileException
from toilray.job import Job

TANGLED = "What a tangled web we weave"
CANDLE = b"Out brief candle"
UNICODE = "Ünïcödé candle, ∞ ✓"


class LocalFileStoreJob(Job):
    def run(self, fileStore: Any) -> dict[str, Any]:
        # self.tempDir lies within the disk space reserved for the job; each access returns the
        # same directory.
        scratchDir = self.tempDir
        scratchFile = fileStore.getLocalTempFile()
        return {
            "tempDir": scratchDir,
            "tempDirStable": self.tempDir == scratchDir,
            "tempDirExists": os.path.isdir(scratchDir),
            "tempFile": scratchFile,
            "tempFileExists": os.path.isfile(scratchFile),
        }


def readable(job: Job, fileStoreID: str) -> bool:
    """Whether the file can still be read from the job store."""
    try:
        job.fileStore.readGlobalFile(fileStoreID)
    except (OSError, NoSuchFileException):
        return False
    return True


def globalFileStoreJobFn(job: Job) -> dict[str, Any]:
    job.log("The following example exercises all the methods provided by the file store")

    scratchFile = job.fileStore.getLocalTempFile()
    with open(scratchFile, "w") as fH:
        fH.write(TANGLED)
    fileID = job.fileStore.writeGlobalFile(scratchFile)

    script = job.fileStore.getLocalTempFile(suffix=".sh")
    with open(script, "w") as fH:
        fH.write("#!/bin/sh\necho hello\n")
    os.chmod(script, os.stat(script).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    exeID = job.fileStore.writeGlobalFile(script)

    with job.fileStore.writeGlobalFileStream(cleanup=True) as (fH, cleanupID):
        fH.write(CANDLE)
    with job.fileStore.writeGlobalFileStream(cleanup=True, encoding="utf-8") as (fH, textID):
        fH.write(UNICODE)

    localCopy = job.fileStore.readGlobalFile(fileID)
    with open(localCopy) as fH:
        readDefault = fH.read()

    userPath = os.path.join(job.tempDir, "foo.txt")
    returnedPath = job.fileStore.readGlobalFile(cleanupID, userPath=userPath)
    with open(userPath, "rb") as fH:
        readUserPath = fH.read().decode()

    with job.fileStore.readGlobalFileStream(cleanupID) as fH:
        streamed = fH.read()
    # Goes to this job's captured output, as in the manual.
    print(streamed)
    with job.fileStore.readGlobalFileStream(textID, encoding="utf-8") as fH:
        streamedText = fH.read()

    exeCopy = job.fileStore.readGlobalFile(exeID)

    observations = {
        "readDefault": readDefault,
        "readUserPath": readUserPath,
        "userPathReturned": os.path.abspath(returnedPath) == os.path.abspath(userPath),
        "streamIsBytes": isinstance(streamed, bytes),
        "streamed": streamed.decode(),
        "streamedText": streamedText,
        "fileIDSize": fileID.size,
        "globalFileSize": job.fileStore.getGlobalFileSize(fileID),
        "streamSize": job.fileStore.getGlobalFileSize(cleanupID),
        # A plain str has no size attribute, so the store itself is asked.
        "textSize": job.fileStore.getGlobalFileSize(str(textID)),
        "executableCopy": os.access(exeCopy, os.X_OK),
        "plainCopyExecutable": os.access(localCopy, os.X_OK),
    }

    # Takes effect in the job store when this job has finished successfully.
    job.fileStore.deleteGlobalFile(fileID)

    ids = {"deleted": fileID, "cleanup": cleanupID, "text": textID, "exe": exeID}
    return {"writer": observations, "ids": ids, "successor": job.addChildJobFn(readBack, ids).rv()}


def readBack(job: Job, ids: dict[str, str]) -> dict[str, Any]:
    with job.fileStore.readGlobalFileStream(ids["cleanup"]) as fH:
        cleanupContent = fH.read().decode()
    with job.fileStore.readGlobalFileStream(ids["text"], encoding="utf-8") as fH:
        text = fH.read()
    return {
        "deletedReadable": readable(job, ids["deleted"]),
        "cleanupContent": cleanupContent,
        "text": text,
        "executableCopy": os.access(job.fileStore.readGlobalFile(ids["exe"]), os.X_OK),
    }


def afterCleanup(job: Job, ids: dict[str, str]) -> dict[str, Any]:
    return {
        "cleanupReadable": readable(job, ids["cleanup"]),
        "textReadable": readable(job, ids["text"]),
        "executableCopy": os.access(job.fileStore.readGlobalFile(ids["exe"]), os.X_OK),
    }


def filesRoot(job: Job) -> dict[str, Any]:
    local = LocalFileStoreJob(disk="200M", memory="200M", cores=0.5)
    job.addChild(local)
    writer = job.addChildJobFn(globalFileStoreJobFn, memory="200M", cores=0.5)
    # A follow-on of the root runs after the writer and all its successors.
    later = job.addFollowOnJobFn(afterCleanup, writer.rv("ids"), memory="200M", cores=0.5)
    return {"local": local.rv(), "global": writer.rv(), "afterCleanup": later.rv()}


def main() -> None:
    parser = Job.Runner.getDefaultArgumentParser()
    options = parser.parse_args()

    with Toil(options) as toil:
        if toil.options.restart:
            result = toil.restart()
        else:
            result = toil.start(Job.wrapJobFn(filesRoot, memory="200M", cores=0.5))
    result["local"]["tempDirExistsAfter"] = os.path.exists(result["local"]["tempDir"])
    result["local"]["tempFileExistsAfter"] = os.path.exists(result["local"]["tempFile"])
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()

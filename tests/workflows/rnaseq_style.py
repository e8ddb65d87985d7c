"""Test workflow in toil-rnaseq's style: a job's disk is a PromisedRequirement computed from
the size of a FileID that an upstream job returns."""

from __future__ import annotations

import json
import os
from typing import Any

from toilray.common import Toil
from toilray.fileStores import FileID
from toilray.job import Job, PromisedRequirement

SIZE = 123_457


def download(job: Job) -> FileID:
    path = os.path.join(job.fileStore.getLocalTempDir(), "sample.fq")
    with open(path, "wb") as handle:
        handle.write(b"A" * SIZE)
    return job.fileStore.writeGlobalFile(path)


def quantify(job: Job, fid: FileID) -> dict[str, Any]:
    local = job.fileStore.readGlobalFile(fid)
    return {"disk": job.disk, "size": fid.size, "read": os.path.getsize(local)}


def pipeline(job: Job) -> Any:
    fid = job.addChildJobFn(download, cores=0.1, disk="10M").rv()
    disk = PromisedRequirement(lambda fid: 2 * fid.size, fid)
    return job.addFollowOnJobFn(quantify, fid, cores=0.1, disk=disk).rv()


if __name__ == "__main__":
    options = Job.Runner.getDefaultArgumentParser().parse_args()
    with Toil(options) as toil:
        print(json.dumps(toil.start(Job.wrapJobFn(pipeline, cores=0.1))))

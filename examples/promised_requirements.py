"""Promised requirements: a job's disk taken from values other jobs return.

    python examples/promised_requirements.py file:my-job-store [--copies N]

``stageFn`` imports this very script into the job store from inside a job and returns
``(FileID, FileID.size)``. One analysis job asks for ``disk=PromisedRequirement(rv(1))`` of a
single download; another uses the aggregator form, a function of a list of promises that
sums the sizes of ``--copies`` downloads. Each analysis job reports the disk it was given
(``job.disk``) and the size of the file it received; the script prints them as JSON.
"""

import json
import os
from typing import Any

from toilray.common import Toil
from toilray.fileStores import FileID
from toilray.job import Job, PromisedRequirement


def stageFn(job: Job, url: str, cores: float = 1) -> tuple[FileID, int]:
    importedFile = job.fileStore.import_file(url)
    return importedFile, importedFile.size


def analysisJob(job: Job, fileStoreID: FileID, cores: float = 1) -> dict[str, int]:
    return {"disk": job.disk, "fileSize": job.fileStore.getGlobalFileSize(fileStoreID)}


def sumSizes(sizes: list[int]) -> int:
    return sum(sizes)


def parentJob(job: Job, copies: int) -> dict[str, Any]:
    url = "file://" + os.path.realpath(__file__)

    downloadJob = Job.wrapJobFn(stageFn, url, cores=0.1, memory="32M", disk="1M")
    job.addChild(downloadJob)
    analysis = Job.wrapJobFn(analysisJob, fileStoreID=downloadJob.rv(0),
                             disk=PromisedRequirement(downloadJob.rv(1)))
    # A follow-on of the parent runs after every child, so the promised size exists by then.
    job.addFollowOn(analysis)

    aggregator = []
    for _ in range(copies):
        download = Job.wrapJobFn(stageFn, url, cores=0.1, memory="32M", disk="1M")
        job.addChild(download)
        aggregator.append(download)
    aggregate = Job.wrapJobFn(analysisJob, fileStoreID=aggregator[-1].rv(0),
                              disk=PromisedRequirement(lambda xs: sum(xs), [j.rv(1) for j in aggregator]))
    job.addFollowOn(aggregate)

    # The same aggregation with a module-level function instead of a lambda.
    named = Job.wrapJobFn(analysisJob, fileStoreID=aggregator[0].rv(0),
                          disk=PromisedRequirement(sumSizes, [j.rv(1) for j in aggregator]))
    job.addFollowOn(named)

    return {"single": analysis.rv(), "lambda": aggregate.rv(), "function": named.rv()}


def main() -> None:
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--copies", type=int, default=3, help="Downloads summed by the aggregator form.")
    options = parser.parse_args()

    with Toil(options) as toil:
        if toil.options.restart:
            result = toil.restart()
        else:
            result = toil.start(Job.wrapJobFn(parentJob, options.copies, cores=0.1, memory="100M"))
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()

"""A three-step pipeline whose jobs the call cache may keep: the call-cache tests run it.

Each step leaves a file in $PIPELINE_COUNTS when its code runs, so a test counts executions.
The root makes the steps at run time (a cached job with successors).
"""

import os
import uuid

from toilray.common import Toil
from toilray.job import Job, cached

COUNTS = os.environ["PIPELINE_COUNTS"]


def mark(name: str) -> None:
    open(os.path.join(COUNTS, f"{name}-{uuid.uuid4().hex}"), "w").close()


@cached
def step1(job, file_id):
    mark("step1")
    with open(job.fileStore.readGlobalFile(file_id)) as handle:
        text = handle.read()
    out = job.fileStore.getLocalTempFile()
    with open(out, "w") as handle:
        handle.write(text.upper())
    return job.fileStore.writeGlobalFile(out)


@cached
def step2(job, file_id):
    mark("step2")
    with open(job.fileStore.readGlobalFile(file_id)) as handle:
        words = handle.read().split()
    return len(words)


@cached
def step3(job, count, file_id):
    mark("step3")
    with open(job.fileStore.readGlobalFile(file_id)) as handle:
        first = handle.read().split()[0]
    return f"{count} words, first {first}"


@cached
def pipeline(job, file_id):
    mark("pipeline")
    one = job.addChildJobFn(step1, file_id)
    two = one.addFollowOnJobFn(step2, one.rv())
    three = two.addFollowOnJobFn(step3, two.rv(), one.rv())
    return three.rv()


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--input", required=True)
    options = parser.parse_args()
    with Toil(options) as toil:
        input_id = toil.importFile("file://" + os.path.abspath(options.input))
        print("RESULT", toil.start(Job.wrapJobFn(pipeline, input_id)))

"""Test workflow: N writer jobs each store a file; a follow-on of each reads it back.

Writers alternate between writeGlobalFile and writeGlobalFileStream, readers between
readGlobalFile and readGlobalFileStream. Writer ``i`` stores the line ``i`` repeated
``i % 50 + 1`` times; its reader checks every line and returns ``i`` times the line count,
so the printed sum is only right if every file arrived whole.
"""

from __future__ import annotations

from toilray.common import Toil
from toilray.fileStores import FileID
from toilray.job import Job


def content(index: int) -> bytes:
    return f"{index}\n".encode() * (index % 50 + 1)


def writer(job: Job, index: int) -> FileID:
    if index % 2:
        with job.fileStore.writeGlobalFileStream() as (stream, file_id):
            stream.write(content(index))
        return file_id
    path = job.fileStore.getLocalTempFile()
    with open(path, "wb") as handle:
        handle.write(content(index))
    return job.fileStore.writeGlobalFile(path)


def reader(job: Job, file_id: FileID, index: int) -> int:
    if index % 2:
        with job.fileStore.readGlobalFileStream(file_id) as stream:
            data = stream.read()
    else:
        with open(job.fileStore.readGlobalFile(file_id), "rb") as handle:
            data = handle.read()
    if data != content(index):
        raise RuntimeError(f"file {index} arrived damaged: {data[:40]!r}")
    return index * (index % 50 + 1)


def total(values: list[int]) -> int:
    return sum(values)


def root(job: Job, n: int) -> object:
    values = []
    for index in range(n):
        write = job.addChildJobFn(writer, index, cores=0.5, memory="50M")
        values.append(write.addFollowOnJobFn(reader, write.rv(), index, cores=0.5, memory="50M").rv())
    return job.addFollowOnFn(total, values).rv()


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--n", type=int, default=150)
    options = parser.parse_args()
    with Toil(options) as toil:
        result = toil.restart() if options.restart else toil.start(Job.wrapJobFn(root, options.n))
    print(f"RESULT {result}")

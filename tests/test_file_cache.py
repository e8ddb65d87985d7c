"""The node cache: many readers of one global file share one read-only copy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from toilray.common import Toil
from toilray.job import Job

SIZE = 200 * 10**6


def _disk_used(directory: str) -> int:
    """Bytes of disk used by regular files under ``directory``, each inode counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for parent, _dirs, files in os.walk(directory):
        for name in files:
            info = os.lstat(os.path.join(parent, name))
            if (info.st_dev, info.st_ino) not in seen and not os.path.islink(os.path.join(parent, name)):
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


def _reader(job: Job, file_id: str, work_dir: str) -> dict[str, Any]:
    path = job.fileStore.readGlobalFile(file_id)
    with open(path, "rb") as handle:
        intact = sum(len(chunk) for chunk in iter(lambda: handle.read(1 << 24), b"")) == SIZE
    try:
        with open(path, "ab") as handle:
            handle.write(b"x")
        write_refused = False
    except OSError:
        write_refused = True
    return {"intact": intact, "write_refused": write_refused, "work_dir_bytes": _disk_used(work_dir)}


def _mutable_reader(job: Job, file_id: str) -> int:
    private = job.fileStore.readGlobalFile(file_id, mutable=True)
    with open(private, "ab") as handle:
        handle.write(b"mine")  # a mutable copy is the job's own to change
    return os.path.getsize(private)


def _readers(job: Job, work_dir: str) -> list[Any]:
    source = job.fileStore.getLocalTempFile()
    with open(source, "wb") as handle:
        handle.truncate(SIZE)
    file_id = job.fileStore.writeGlobalFile(source)
    os.unlink(source)
    readers = [job.addChildJobFn(_reader, file_id, work_dir, cores=0.1, memory="100M", disk="300M").rv()
               for _ in range(10)]
    return [readers, job.addFollowOnJobFn(_mutable_reader, file_id, cores=0.1, disk="300M").rv()]


def test_ten_readers_share_one_read_only_copy(tmp_path: Path, ray_address: str) -> None:
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
    options.workDir = str(work_dir)
    with Toil(options) as toil:
        results, mutable_size = toil.start(Job.wrapJobFn(_readers, str(work_dir), cores=0.1, disk="300M"))
    assert mutable_size == SIZE + 4
    assert all(r["intact"] for r in results)
    assert all(r["write_refused"] for r in results)
    peak = max(r["work_dir_bytes"] for r in results)
    print(f"peak extra disk in the work dir while 10 jobs held the file: {peak / 1e6:.0f} MB")
    assert peak < 1.5 * SIZE  # one shared copy, not ten
    assert not (work_dir / "toilray-").exists() and os.listdir(work_dir) == []


MB100 = 100 * 10**6


def _cache_bytes(work_dir: str) -> int:
    total = 0
    for parent, _dirs, files in os.walk(work_dir):
        if os.path.basename(parent) == "cache":
            total += sum(os.lstat(os.path.join(parent, f)).st_size for f in files if not f.endswith(".tmp"))
    return total


def _shared(path: str) -> bool:
    return os.path.islink(path) or os.stat(path).st_nlink > 1


def _read_two(job: Job, first: str, second: str, work_dir: str) -> list[Any]:
    a = job.fileStore.readGlobalFile(first)
    b = job.fileStore.readGlobalFile(second)  # no room left: the first is still held by this job
    return [_shared(a), _shared(b), _cache_bytes(work_dir)]


def _read_second(job: Job, second: str, work_dir: str) -> list[Any]:
    b = job.fileStore.readGlobalFile(second)  # the first is no longer held: it is evicted
    return [_shared(b), _cache_bytes(work_dir)]


def _two_files(job: Job, work_dir: str) -> list[Any]:
    ids = []
    for name in ("first", "second"):
        path = os.path.join(job.fileStore.getLocalTempDir(), name)
        with open(path, "wb") as handle:
            handle.write(name.encode() * (MB100 // len(name)))
        ids.append(job.fileStore.writeGlobalFile(path))
    reader = job.addChildJobFn(_read_two, ids[0], ids[1], work_dir, cores=0.1, disk="150M")
    later = reader.addFollowOnJobFn(_read_second, ids[1], work_dir, cores=0.1, disk="150M")
    return [reader.rv(), later.rv()]


def test_cache_stays_within_the_jobs_disk_requests(tmp_path: Path, ray_address: str) -> None:
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
    options.workDir = str(work_dir)
    with Toil(options) as toil:
        (first_shared, second_shared, cache_then), (later_shared, cache_later) = toil.start(
            Job.wrapJobFn(_two_files, str(work_dir), cores=0.1, disk="300M"))
    assert first_shared and not second_shared  # the second read got a private copy
    assert later_shared  # once the first was released, the second was cached
    assert cache_then <= 150 * 10**6 and cache_later <= 150 * 10**6

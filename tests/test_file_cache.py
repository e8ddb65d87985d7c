"""The node cache: many readers of one global file share one read-only copy.

Readers that start at the same instant (processes calling the cache, and jobs of a workflow)
make one copy between them, and fills of different files at once stay within the limit; each
of those tests repeats its round 20 times while a spinning process keeps every core busy.
"""

from __future__ import annotations

import glob
import hashlib
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from together import JobBarrier, copies, read_together, write_global

from toilray.common import Toil
from toilray.fileStores.cache import NodeCache, remove_cache
from toilray.job import Job
from toilray.jobStores.jobStore import JobStore
from toilray.lib.files import copy_file

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
    return {"intact": intact, "write_refused": write_refused, "work_dir_bytes": _disk_used(work_dir),
            "names": os.stat(path).st_nlink}


def _mutable_reader(job: Job, file_id: str) -> list[int]:
    private = job.fileStore.readGlobalFile(file_id, mutable=True)
    with open(private, "ab") as handle:
        handle.write(b"mine")  # a mutable copy is the job's own to change
    # Neither the node's cached copy nor the stored file changed with it.
    shared = job.fileStore.readGlobalFile(file_id)
    with job.fileStore.readGlobalFileStream(file_id) as stored:
        stored_size = sum(len(chunk) for chunk in iter(lambda: stored.read(1 << 24), b""))
    return [os.path.getsize(private), os.path.getsize(shared), stored_size]


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
        results, sizes = toil.start(Job.wrapJobFn(_readers, str(work_dir), cores=0.1, disk="300M"))
    assert sizes == [SIZE + 4, SIZE, SIZE]  # the mutable copy grew; the cache and the store did not
    assert all(r["intact"] for r in results)
    assert all(r["write_refused"] for r in results)
    # The store is on the work dir's file system: the file read is the store's own inode (its
    # name in the store and the cache entry), not a copy, also as root (who gets a symlink to it).
    assert all(r["names"] >= 2 for r in results)
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


# -- readers that start at the same instant, on a machine whose cores are all busy ---------------

ROUNDS = 20
SMALL = 4 << 20


@pytest.fixture
def busy_cores() -> Iterator[list[subprocess.Popen[bytes]]]:
    """A spinning process per core of this machine, for the whole test."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(len(os.sched_getaffinity(0)))]
    try:
        yield spinners
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()


def _cache_reader(root: str, index: int, shared: bool, limit: int, barrier: Any) -> None:
    """One process of the direct cache test: a round is a fresh cache that every process reads
    one file from (the same file if ``shared``, else a file of its own) at the same instant."""
    try:
        for k in range(ROUNDS):
            round_dir = os.path.join(root, str(k))
            cache = NodeCache(os.path.join(round_dir, "cache"))
            file_id = f"files/{'shared' if shared else index}/data"

            def fill(tmp: str, round_dir: str = round_dir) -> None:
                # Each fill is a copy made: the test counts them.
                open(os.path.join(round_dir, "fills", str(index)), "x").close()
                shutil.copyfile(os.path.join(round_dir, "source"), tmp)

            barrier.wait()  # the round's source is written: all read now
            cache.place(file_id, os.path.join(round_dir, f"reader-{index}"), False, SMALL, limit, fill)
            barrier.wait()  # every reader holds what it got; the test looks
            barrier.wait()
            cache.release()
    except BaseException:
        barrier.abort()
        raise


def _run_cache_readers(root: Path, readers: int, shared: bool, limit: int,
                       check: Callable[[Path], None]) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(readers + 1, timeout=120)
    processes = [context.Process(target=_cache_reader, args=(str(root), i, shared, limit, barrier))
                 for i in range(readers)]
    for process in processes:
        process.start()
    try:
        for k in range(ROUNDS):
            round_dir = root / str(k)
            (round_dir / "fills").mkdir(parents=True)
            (round_dir / "source").write_bytes(os.urandom(SMALL))
            barrier.wait()
            barrier.wait()
            check(round_dir)
            barrier.wait()
        for process in processes:
            process.join()
        assert [process.exitcode for process in processes] == [0] * readers
    finally:
        barrier.abort()
        for process in processes:
            process.join()


def _cache_state(round_dir: Path) -> tuple[list[str], list[str]]:
    """The round's cache entries, and anything left of fills (there should be nothing)."""
    cache = round_dir / "cache"
    entries = sorted(name for name in os.listdir(cache) if not name.startswith("."))
    leftovers = os.listdir(cache / ".filling") + os.listdir(cache / ".reserved")
    return entries, leftovers


def test_processes_reading_one_file_at_once_make_one_copy(tmp_path: Path,
                                                          busy_cores: list[subprocess.Popen[bytes]]) -> None:
    readers = 8

    def check(round_dir: Path) -> None:
        entries, leftovers = _cache_state(round_dir)
        assert len(entries) == 1 and leftovers == [], (round_dir.name, entries, leftovers)
        assert len(os.listdir(round_dir / "fills")) == 1, round_dir.name  # one copy was ever made
        entry = os.stat(round_dir / "cache" / entries[0])
        views = [round_dir / f"reader-{i}" for i in range(readers)]
        assert all(os.stat(view).st_ino == entry.st_ino for view in views), round_dir.name
        if os.geteuid() == 0:
            assert all(view.is_symlink() for view in views)  # to the immutable copy
        else:
            assert entry.st_nlink == readers + 1
        assert views[-1].read_bytes() == (round_dir / "source").read_bytes()
        source = os.stat(round_dir / "source")
        assert set(copies(round_dir, SMALL)) == {(source.st_dev, source.st_ino), (entry.st_dev, entry.st_ino)}

    _run_cache_readers(tmp_path, readers, shared=True, limit=64 * SMALL, check=check)
    assert all(spinner.poll() is None for spinner in busy_cores)  # the load ran throughout


def test_fills_of_different_files_at_once_stay_within_the_limit(tmp_path: Path,
                                                                busy_cores: list[subprocess.Popen[bytes]]) -> None:
    readers = 6

    def check(round_dir: Path) -> None:
        entries, leftovers = _cache_state(round_dir)
        placed = [i for i in range(readers) if (round_dir / f"reader-{i}").exists()]
        # Room for two: the fills in progress count at their full size, so no more start.
        assert len(entries) == 2 and leftovers == [], (round_dir.name, entries, leftovers)
        assert sorted(os.listdir(round_dir / "fills")) == sorted(str(i) for i in placed) and len(placed) == 2

    _run_cache_readers(tmp_path, readers, shared=False, limit=SMALL * 5 // 2, check=check)
    assert all(spinner.poll() is None for spinner in busy_cores)


def _reader_of_rounds(job: Job, file_ids: list[str], sync_dir: str) -> list[dict[str, Any]]:
    # One file a round: the same jobs read every round's file (no worker starts between rounds).
    return [read_together(job, file_id, sync_dir, str(k)) for k, file_id in enumerate(file_ids)]


def _rounds_of_readers(job: Job, readers: int, sync_dir: str) -> list[Any]:
    file_ids, digests = [], []
    for k in range(ROUNDS):
        data = os.urandom(SMALL + k)  # each round's file has a size of its own
        file_ids.append(write_global(job, data, f"round-{k}"))
        digests.append(hashlib.sha256(data).hexdigest())
    held = [job.addChildJobFn(_reader_of_rounds, file_ids, sync_dir, cores=0.1, memory="100M",
                              disk=f"{ROUNDS * SMALL * 2}").rv() for _ in range(readers)]
    return [digests, held]


def test_jobs_reading_one_file_at_once_share_one_copy(tmp_path: Path, ray_address: str,
                                                      busy_cores: list[subprocess.Popen[bytes]]) -> None:
    readers = 6
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    copies_seen: dict[int, set[tuple[int, int]]] = {}
    leftovers_seen: dict[int, list[str]] = {}

    def look(phase: str) -> None:
        if phase.startswith("held-"):
            k = int(phase.split("-")[1])
            copies_seen[k] = set(copies(work_dir, SMALL + k))
            leftovers_seen[k] = [name for cache in glob.glob(str(work_dir / "toilray-*" / "cache"))
                                 for part in (".filling", ".reserved") for name in os.listdir(f"{cache}/{part}")]

    phases = [f"{step}-{k}" for k in range(ROUNDS) for step in ("read", "held")]
    options = Job.Runner.getDefaultOptions(f"file:{tmp_path / 'store'}")
    options.workDir = str(work_dir)
    options.disableChaining = True  # each reader a Ray task of its own, all running at once
    with JobBarrier(tmp_path / "sync", readers, phases, look) as barrier, Toil(options) as toil:
        digests, by_reader = toil.start(Job.wrapJobFn(_rounds_of_readers, readers, barrier.directory,
                                                      cores=0.1, memory="100M"))
    assert barrier.errors == []
    assert len(by_reader) == readers
    for k in range(ROUNDS):
        held = [rounds[k] for rounds in by_reader]
        assert len(held) == readers and all(r["sha256"] == digests[k] for r in held), k
        # One copy on the node, and every reader's view is of it.
        assert len(copies_seen[k]) == 1 and leftovers_seen[k] == [], (k, copies_seen[k], leftovers_seen[k])
        assert {r["inode"] for r in held} == copies_seen[k], k
        if os.geteuid() == 0:
            assert all(r["symlink"] for r in held)
        else:
            assert all(r["links"] >= readers + 1 for r in held)
    assert all(spinner.poll() is None for spinner in busy_cores)


def _fill_until_killed(directory: str, started: Any, never: Any) -> None:
    def fill(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(b"partial")
        started.set()
        never.wait()  # killed here, mid-fill

    NodeCache(directory).place("files/a/data", os.path.join(directory, "..", "view"), False, SMALL, 2 * SMALL, fill)


def test_what_a_process_killed_mid_fill_leaves_is_cleaned_up(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    started, never = context.Event(), context.Event()
    filler = context.Process(target=_fill_until_killed, args=(str(cache_dir), started, never))
    filler.start()
    try:
        assert started.wait(120)
        assert os.listdir(cache_dir / ".filling") and os.listdir(cache_dir / ".reserved")
    finally:
        filler.kill()
        filler.join()
    source = tmp_path / "source"
    source.write_bytes(os.urandom(SMALL))
    cache = NodeCache(str(cache_dir))
    # The dead fill's reservation would leave no room for another file in 1.5 copies' worth.
    assert cache.place("files/b/data", str(tmp_path / "b"), False, SMALL, SMALL * 3 // 2,
                       lambda tmp: shutil.copyfile(source, tmp))
    assert os.listdir(cache_dir / ".filling") == [] and os.listdir(cache_dir / ".reserved") == []
    cache.release()
    # The file the dead process was filling is filled afresh, whole.
    assert cache.place("files/a/data", str(tmp_path / "a"), False, SMALL, SMALL * 3 // 2,
                       lambda tmp: shutil.copyfile(source, tmp))
    assert (tmp_path / "a").read_bytes() == source.read_bytes()
    entries, leftovers = _cache_state(tmp_path)
    assert len(entries) == 1 and leftovers == []  # the other file, no longer held, made room
    assert os.stat(cache_dir / entries[0]).st_ino == os.stat(tmp_path / "a").st_ino
    cache.release()


def test_copies_are_whole_across_file_systems_and_of_files_of_unknown_size(tmp_path: Path) -> None:
    """copy_file (mutable reads, stores of local files) falls back where copy_file_range cannot
    do the copy: from another file system (/dev/shm), and from /proc, whose files report size 0."""
    data = os.urandom(SMALL + 17)
    sources = [Path(tempfile.mkdtemp(dir="/dev/shm")) / "data"] if os.path.isdir("/dev/shm") else []
    sources.append(tmp_path / "data")
    try:
        for source in sources:
            source.write_bytes(data)
            copy_file(str(source), str(tmp_path / "copy"))
            assert (tmp_path / "copy").read_bytes() == data, source
            os.unlink(tmp_path / "copy")
    finally:
        if len(sources) > 1:
            shutil.rmtree(sources[0].parent)
    copy_file("/proc/self/status", str(tmp_path / "status"))
    assert (tmp_path / "status").read_text().startswith("Name:")


def test_a_read_of_a_local_store_file_is_the_stored_inode_and_cannot_change_it(tmp_path: Path) -> None:
    """No copy: the cache entry and the job's view are the store's own inode, which a write
    through the view (even root's) cannot change; the store can still delete the file and be
    destroyed, and the cache's entry stays read-only after the store let its name go."""
    store = JobStore(f"file:{tmp_path / 'store'}")
    store.initialize()
    source = tmp_path / "source"
    data = os.urandom(SMALL)
    source.write_bytes(data)
    file_id = store.write_file(str(source))
    stored = tmp_path / "store" / file_id
    cache = NodeCache(str(tmp_path / "cache"))
    view = tmp_path / "view"
    assert cache.place(file_id, str(view), False, SMALL, 2 * SMALL,
                       lambda tmp: store.read_file(file_id, tmp, allow_link=True))
    assert os.stat(view).st_ino == os.stat(stored).st_ino  # the store's inode, not a copy
    for mode in ("ab", "r+b", "wb"):
        with pytest.raises(OSError):
            open(view, mode).close()
    assert stored.read_bytes() == data
    store.delete_file(file_id)
    assert not stored.exists()
    with pytest.raises(OSError):
        open(view, "ab").close()
    assert view.read_bytes() == data
    cache.release()
    remove_cache(str(tmp_path / "cache"))
    store.destroy()
    assert not (tmp_path / "store").exists() and not (tmp_path / "cache").exists()

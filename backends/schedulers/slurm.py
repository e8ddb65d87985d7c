"""Slurm: allocations from ``SLURM_JOB_NODELIST``, hosts reached with ``srun``, ``sbatch`` scripts."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from toilray.backends.schedulers.script import batch_script, megabytes

from toilray.hpc import (
    FINISHED,
    PENDING,
    RUNNING,
    Allocation,
    BatchRequest,
    HostSlots,
    Scheduler,
    SchedulerError,
    Submission,
)

_PENDING_STATES = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED"}
_RUNNING_STATES = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
_MB = 1024 * 1024


def expand_hostlist(expression: str) -> list[str]:
    """Slurm's compressed host list (``node[1-3,7],gpu[01-02]``) as host names, in order."""
    hosts: list[str] = []
    for prefix, ranges, suffix in re.findall(r"([^,\[]*)(?:\[([^\]]*)\])?([^,\[]*)(?:,|$)", expression):
        if not prefix and not ranges and not suffix:
            continue
        if not ranges:
            hosts.append(prefix + suffix)
            continue
        for part in ranges.split(","):
            first, _, last = part.partition("-")
            if not last:
                hosts.append(f"{prefix}{first}{suffix}")
                continue
            width = len(first)
            hosts += [f"{prefix}{number:0{width}d}{suffix}" for number in range(int(first), int(last) + 1)]
    return hosts


def expand_counts(expression: str) -> list[int]:
    """Slurm's per-node counts (``SLURM_JOB_CPUS_PER_NODE``: ``2(x3),1``) one per node."""
    counts: list[int] = []
    for part in expression.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if match is None:
            continue
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def _gpus(environ: Mapping[str, str]) -> int:
    """GPUs per node: SLURM_GPUS_PER_NODE (``2``, ``a100:2``), else this node's SLURM_GPUS_ON_NODE."""
    for name in ("SLURM_GPUS_PER_NODE", "SLURM_GPUS_ON_NODE"):
        value = environ.get(name, "").rpartition(":")[2]
        if value.isdigit():
            return int(value)
    return 0


class Slurm(Scheduler):
    name = "slurm"
    args_variable = "TOIL_SLURM_ARGS"
    ended_job_message = "Invalid job id"

    def detect(self, environ: Mapping[str, str]) -> Allocation | None:
        job_id = environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID")
        node_list = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
        if not job_id or not node_list:
            return None
        names = expand_hostlist(node_list)
        cpus = expand_counts(environ.get("SLURM_JOB_CPUS_PER_NODE", ""))
        cpus += [cpus[-1] if cpus else 1] * (len(names) - len(cpus))
        gpus = _gpus(environ)
        hosts = []
        for name, count in zip(names, cpus, strict=False):
            if environ.get("SLURM_MEM_PER_NODE", "").isdigit():
                memory: int | None = int(environ["SLURM_MEM_PER_NODE"]) * _MB
            elif environ.get("SLURM_MEM_PER_CPU", "").isdigit():
                memory = int(environ["SLURM_MEM_PER_CPU"]) * count * _MB
            else:
                memory = None
            hosts.append(HostSlots(name, count, memory, gpus))
        # The batch script runs on the node it names: that one holds the Ray head.
        here = environ.get("SLURMD_NODENAME")
        hosts.sort(key=lambda h: h.host != here)
        return Allocation(self.name, job_id, tuple(hosts))

    def launch_command(self, allocation: Allocation, host: HostSlots, command: Sequence[str]) -> list[str]:
        # --overlap: the step shares the node with any other step; --kill-on-bad-exit: a Ray node
        # that fails takes its step down rather than leave it half there.
        return ["srun", "--nodes=1", "--ntasks=1", f"--nodelist={host.host}", f"--cpus-per-task={host.cpus}",
                "--overlap", "--kill-on-bad-exit=1", "--quiet", "--job-name=toilray-ray-node", *command]

    def render_script(self, request: BatchRequest) -> str:
        directives = [f"--job-name={request.job_name}", f"--nodes={request.nodes}", "--ntasks-per-node=1",
                      f"--cpus-per-task={request.cpus}"]
        if request.memory is not None:
            directives.append(f"--mem={megabytes(request.memory)}M")
        if request.gpus:
            directives.append(f"--gres=gpu:{request.gpus}")
        if request.time:
            directives.append(f"--time={request.time}")
        if request.queue:
            directives.append(f"--partition={request.queue}")
        if request.qos:
            directives.append(f"--qos={request.qos}")
        if request.output:
            directives.append(f"--output={request.output}")
        return batch_script("#SBATCH", directives, request)

    def submission(self, script_path: str, request: BatchRequest) -> Submission:
        extra = list(request.extra_args)
        # As Toil does: the job sees the submitting shell's environment unless told otherwise.
        if not any(a.startswith(("--export", "--export-file")) for a in extra):
            extra.append("--export=ALL")
        return Submission(("sbatch", "--parsable", *extra, script_path))

    def job_id(self, submit_output: str) -> str:
        return submit_output.strip().splitlines()[-1].split(";")[0].strip()

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["scancel", *job_ids]

    def status_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["squeue", "--noheader", "--states=all", "--format=%i %T", f"--jobs={','.join(job_ids)}"]

    def parse_status(self, returncode: int, output: str, job_ids: Sequence[str]) -> dict[str, str]:
        # squeue fails when every job asked about has been forgotten (after MinJobAge).
        if returncode != 0 and "Invalid job id" not in output:
            raise SchedulerError(f"squeue failed: {output.strip() or f'exit status {returncode}'}")
        states = dict.fromkeys(job_ids, FINISHED)
        for line in output.splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[0] in states:
                state = fields[1].rstrip("+")
                states[fields[0]] = PENDING if state in _PENDING_STATES else \
                    RUNNING if state in _RUNNING_STATES else FINISHED
        return states

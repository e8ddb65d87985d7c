"""Grid Engine (SGE, UGE): allocations from ``PE_HOSTFILE``, hosts reached with ``qrsh -inherit``,
``qsub`` scripts with a parallel environment."""

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

# Toil's TOIL_GRIDENGINE_PE has no default; 'smp' is the name Grid Engine's own templates use.
DEFAULT_PE = "smp"


class GridEngine(Scheduler):
    name = "grid_engine"
    args_variable = "TOIL_GRIDENGINE_ARGS"
    ended_job_message = "does not exist"

    def detect(self, environ: Mapping[str, str]) -> Allocation | None:
        job_id, hostfile = environ.get("JOB_ID"), environ.get("PE_HOSTFILE")
        if not job_id or not hostfile:
            return None
        slots: dict[str, int] = {}
        try:
            with open(hostfile) as handle:
                for line in handle:
                    fields = line.split()
                    if len(fields) >= 2 and fields[1].isdigit():
                        # A host is listed once per queue it has slots in.
                        slots[fields[0]] = slots.get(fields[0], 0) + int(fields[1])
        except OSError as exc:
            raise SchedulerError(f"Cannot read Grid Engine's PE_HOSTFILE {hostfile}: {exc.strerror}") from None
        # The first line is the master host, where the job script runs.
        return Allocation(self.name, job_id, tuple(HostSlots(h, n) for h, n in slots.items()))

    def launch_command(self, allocation: Allocation, host: HostSlots, command: Sequence[str]) -> list[str]:
        # Needs a parallel environment with control_slaves TRUE (so that qrsh may start tasks).
        return ["qrsh", "-inherit", "-nostdin", "-V", host.host, *command]

    def render_script(self, request: BatchRequest) -> str:
        pe = request.parallel_environment or DEFAULT_PE
        directives = [f"-N {request.job_name}", "-V", "-cwd", "-j y", "-S /bin/bash",
                      f"-pe {pe} {request.nodes * request.cpus}"]
        if request.memory is not None:
            # h_vmem is per slot.
            directives.append(f"-l h_vmem={megabytes(request.memory // request.cpus)}M")
        if request.gpus:
            directives.append(f"-l gpu={request.gpus}")
        if request.time:
            directives.append(f"-l h_rt={request.time}")
        if request.queue:
            directives.append(f"-q {request.queue}")
        if request.output:
            directives.append(f"-o {request.output}")
        return batch_script("#$", directives, request)

    def submission(self, script_path: str, request: BatchRequest) -> Submission:
        return Submission(("qsub", "-terse", *request.extra_args, script_path))

    def job_id(self, submit_output: str) -> str:
        match = re.search(r"^(\d+)", submit_output.strip()) or re.search(r"Your job (\d+)", submit_output)
        if match is None:
            raise SchedulerError(f"qsub printed no job ID: {submit_output.strip()}")
        return match.group(1)

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["qdel", *job_ids]

    def status_command(self, job_ids: Sequence[str]) -> list[str]:
        # One qstat of the user's jobs answers for all of them (qstat -j is one job's details).
        return ["qstat"]

    def parse_status(self, returncode: int, output: str, job_ids: Sequence[str]) -> dict[str, str]:
        if returncode != 0:
            raise SchedulerError(f"qstat failed: {output.strip() or f'exit status {returncode}'}")
        states = dict.fromkeys(job_ids, FINISHED)
        for line in output.splitlines():
            fields = line.split()
            if len(fields) >= 5 and fields[0] in states:
                code = fields[4]
                states[fields[0]] = RUNNING if any(c in code for c in "rtd") else PENDING
        return states

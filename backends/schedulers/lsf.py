"""LSF: allocations from ``LSB_MCPU_HOSTS``, hosts reached with ``blaunch``, ``bsub`` scripts.

Not run against a real LSF here (none is installed): the rendered scripts and commands are
checked by unit tests only.
"""

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

_PENDING_STATES = {"PEND", "PSUSP", "WAIT"}
_RUNNING_STATES = {"RUN", "USUSP", "SSUSP", "PROV"}


def _time_limit(text: str) -> str:
    """bsub -W takes [HH:]MM; Slurm-style HH:MM:SS is cut to its minutes."""
    parts = text.split(":")
    return ":".join(parts[:2]) if len(parts) == 3 else text


class LSF(Scheduler):
    name = "lsf"
    args_variable = "TOIL_LSF_ARGS"
    ended_job_message = "already finished"

    def detect(self, environ: Mapping[str, str]) -> Allocation | None:
        job_id, listing = environ.get("LSB_JOBID"), environ.get("LSB_MCPU_HOSTS")
        if not job_id or not listing:
            return None
        fields = listing.split()
        slots: dict[str, int] = {}
        for host, count in zip(fields[::2], fields[1::2], strict=False):
            if count.isdigit():
                slots[host] = slots.get(host, 0) + int(count)
        # LSB_MCPU_HOSTS lists the first execution host, where the job script runs, first.
        return Allocation(self.name, job_id, tuple(HostSlots(h, n) for h, n in slots.items()))

    def launch_command(self, allocation: Allocation, host: HostSlots, command: Sequence[str]) -> list[str]:
        return ["blaunch", host.host, *command]

    def render_script(self, request: BatchRequest) -> str:
        directives = [f"-J {request.job_name}", f"-n {request.nodes * request.cpus}",
                      f'-R "span[ptile={request.cpus}]"']
        if request.memory is not None:
            # Toil's --memoryIsProduct: LSF multiplies the figure by the slots, so give it per slot.
            per = request.memory // request.cpus if request.memory_is_product else request.memory
            mb = megabytes(per)
            directives += [f'-R "rusage[mem={mb}MB]"', f"-M {mb}MB"]
        if request.gpus:
            directives.append(f'-gpu "num={request.gpus}"')
        if request.time:
            directives.append(f"-W {_time_limit(request.time)}")
        if request.queue:
            directives.append(f"-q {request.queue}")
        if request.output:
            directives.append(f"-o {request.output}")
        return batch_script("#BSUB", directives, request)

    def submission(self, script_path: str, request: BatchRequest) -> Submission:
        # bsub reads #BSUB lines only from a script given on its standard input.
        return Submission(("bsub", *request.extra_args), stdin_path=script_path)

    def job_id(self, submit_output: str) -> str:
        match = re.search(r"Job <(\d+)>", submit_output)
        if match is None:
            raise SchedulerError(f"bsub printed no job ID: {submit_output.strip()}")
        return match.group(1)

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["bkill", *job_ids]

    def status_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["bjobs", "-noheader", "-o", "jobid stat", *job_ids]

    def parse_status(self, returncode: int, output: str, job_ids: Sequence[str]) -> dict[str, str]:
        # bjobs exits non-zero when a job is not found (forgotten jobs have finished).
        if returncode != 0 and "is not found" not in output:
            raise SchedulerError(f"bjobs failed: {output.strip() or f'exit status {returncode}'}")
        states = dict.fromkeys(job_ids, FINISHED)
        for line in output.splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[0] in states:
                states[fields[0]] = PENDING if fields[1] in _PENDING_STATES else \
                    RUNNING if fields[1] in _RUNNING_STATES else FINISHED
        return states

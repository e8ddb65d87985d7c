"""The schedulers' side of toilray's HPC support without a scheduler: allocations read from the
environment, the commands that reach a host, and the batch scripts `toilray hpc` writes, with
Toil's options and variables. LSF has no real cluster here: these are its only tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from toilray.backends.schedulers.slurm import expand_counts, expand_hostlist

from toilray import hpc, hpc_schedulers
from toilray.cli import main

MB = 1024 * 1024


def test_lsf_allocation_and_blaunch() -> None:
    lsf = hpc_schedulers.by_name("lsf")
    allocation = lsf.detect({"LSB_JOBID": "77", "LSB_MCPU_HOSTS": "hostA 4 hostB 4 hostC 2"})
    assert allocation is not None
    assert allocation.job_id == "77"
    assert [(h.host, h.cpus) for h in allocation.hosts] == [("hostA", 4), ("hostB", 4), ("hostC", 2)]
    command = lsf.launch_command(allocation, allocation.hosts[1], ["python", "-m", "toilray.lib.ray_node", "--x"])
    assert command == ["blaunch", "hostB", "python", "-m", "toilray.lib.ray_node", "--x"]
    assert lsf.detect({"LSB_JOBID": "77"}) is None


def test_lsf_batch_script_maps_toil_options() -> None:
    lsf = hpc_schedulers.by_name("lsf")
    request = hpc.BatchRequest(command=("python", "-m", "toilray", "run", "/w/flow.py", "file:/w/store"),
                               nodes=3, cpus=4, memory=16 * 1024 * MB, gpus=2, time="02:30:00", queue="long",
                               job_name="toilray-flow", output="/w/flow.log",
                               extra_args=tuple(lsf.extra_args({"TOIL_LSF_ARGS": "-P proj -G grp"})),
                               memory_is_product=True, status_file="/w/flow.status")
    script = lsf.render_script(request)
    assert script.splitlines() == [
        "#!/bin/bash",
        "#BSUB -J toilray-flow",
        "#BSUB -n 12",
        '#BSUB -R "span[ptile=4]"',
        '#BSUB -R "rusage[mem=4096MB]"',  # --memoryIsProduct: 16 GiB over 4 slots
        "#BSUB -M 4096MB",
        '#BSUB -gpu "num=2"',
        "#BSUB -W 02:30",
        "#BSUB -q long",
        "#BSUB -o /w/flow.log",
        "trap : TERM INT",
        "python -m toilray run /w/flow.py file:/w/store",
        "status=$?",
        "echo $status > /w/flow.status",
        "exit $status",
    ]
    whole_node = lsf.render_script(hpc.BatchRequest(command=("true",), cpus=4, memory=16 * 1024 * MB))
    assert '#BSUB -R "rusage[mem=16384MB]"' in whole_node
    submission = lsf.submission("/w/flow.sh", request)
    assert submission.argv == ("bsub", "-P", "proj", "-G", "grp")
    assert submission.stdin_path == "/w/flow.sh"  # bsub reads #BSUB lines from stdin only
    assert lsf.job_id("Job <4242> is submitted to queue <long>.\n") == "4242"
    assert lsf.cancel_command(["1", "2"]) == ["bkill", "1", "2"]
    assert lsf.parse_status(255, "1 RUN\n2 PEND\nJob <3> is not found\n", ["1", "2", "3"]) == \
        {"1": hpc.RUNNING, "2": hpc.PENDING, "3": hpc.FINISHED}
    with pytest.raises(hpc.SchedulerError, match="bjobs failed"):
        lsf.parse_status(255, "LSF is down\n", ["1"])


def test_slurm_allocation_from_its_variables() -> None:
    assert expand_hostlist("node[1-3,07],gpu[01-02],login") == \
        ["node1", "node2", "node3", "node07", "gpu01", "gpu02", "login"]
    assert expand_counts("2(x3),1") == [2, 2, 2, 1]
    slurm = hpc_schedulers.by_name("slurm")
    allocation = slurm.detect({"SLURM_JOB_ID": "9", "SLURM_JOB_NODELIST": "node[1-3]", "SLURMD_NODENAME": "node2",
                               "SLURM_JOB_CPUS_PER_NODE": "4(x2),2", "SLURM_MEM_PER_CPU": "1000",
                               "SLURM_GPUS_PER_NODE": "a100:2"})
    assert allocation is not None
    # The node the batch script runs on comes first: it holds the head.
    assert [(h.host, h.cpus, h.memory, h.gpus) for h in allocation.hosts] == [
        ("node2", 4, 4000 * MB, 2), ("node1", 4, 4000 * MB, 2), ("node3", 2, 2000 * MB, 2)]
    assert slurm.launch_command(allocation, allocation.hosts[2], ["ray-node"])[:5] == \
        ["srun", "--nodes=1", "--ntasks=1", "--nodelist=node3", "--cpus-per-task=2"]
    assert slurm.detect({"SLURM_JOB_ID": "9"}) is None


def test_slurm_script_and_commands_map_toil_options() -> None:
    slurm = hpc_schedulers.by_name("slurm")
    request = hpc.BatchRequest(command=("toilray-cwl-runner", "wf.cwl", "job.yml"), nodes=3, cpus=8,
                               memory=32 * 1024 * MB, gpus=1, time="1:00:00", queue="gpu", qos="high",
                               extra_args=tuple(slurm.extra_args({"TOIL_SLURM_ARGS": "-A lab --exclusive"})))
    lines = slurm.render_script(request).splitlines()
    for directive in ("--nodes=3", "--ntasks-per-node=1", "--cpus-per-task=8", "--mem=32768M", "--gres=gpu:1",
                      "--time=1:00:00", "--partition=gpu", "--qos=high"):
        assert f"#SBATCH {directive}" in lines
    assert lines[-1] == "exec toilray-cwl-runner wf.cwl job.yml"
    assert slurm.submission("/w/x.sh", request).argv == \
        ("sbatch", "--parsable", "-A", "lab", "--exclusive", "--export=ALL", "/w/x.sh")
    own_export = hpc.BatchRequest(command=("true",), extra_args=("--export=NONE",))
    assert "--export=ALL" not in slurm.submission("/w/x.sh", own_export).argv
    assert slurm.job_id("4711;cluster\n") == "4711"
    assert slurm.status_command(["1", "2"])[-1] == "--jobs=1,2"
    assert slurm.parse_status(0, "1 RUNNING\n2 PENDING\n", ["1", "2", "3"]) == \
        {"1": hpc.RUNNING, "2": hpc.PENDING, "3": hpc.FINISHED}
    assert slurm.parse_status(1, "slurm_load_jobs error: Invalid job id specified\n", ["5"]) == {"5": hpc.FINISHED}
    with pytest.raises(hpc.SchedulerError, match="squeue failed"):
        slurm.parse_status(1, "Unable to contact slurm controller\n", ["5"])


def test_grid_engine_allocation_and_script(tmp_path: Path) -> None:
    ge = hpc_schedulers.by_name("gridengine")
    hostfile = tmp_path / "pe_hostfile"
    hostfile.write_text("hostA 2 all.q@hostA UNDEFINED\nhostB 2 all.q@hostB UNDEFINED\nhostB 1 big.q@hostB UNDEFINED\n")
    allocation = ge.detect({"JOB_ID": "5", "PE_HOSTFILE": str(hostfile)})
    assert allocation is not None
    assert [(h.host, h.cpus) for h in allocation.hosts] == [("hostA", 2), ("hostB", 3)]
    assert ge.launch_command(allocation, allocation.hosts[1], ["ray-node"]) == \
        ["qrsh", "-inherit", "-nostdin", "-V", "hostB", "ray-node"]
    with pytest.raises(hpc.SchedulerError, match="PE_HOSTFILE"):
        ge.detect({"JOB_ID": "5", "PE_HOSTFILE": str(tmp_path / "missing")})
    request = hpc.BatchRequest(command=("true",), nodes=2, cpus=4, memory=8 * 1024 * MB, parallel_environment="mpi",
                               extra_args=tuple(ge.extra_args({"TOIL_GRIDENGINE_ARGS": "-q batch.q"})))
    lines = ge.render_script(request).splitlines()
    assert "#$ -pe mpi 8" in lines and "#$ -l h_vmem=2048M" in lines  # h_vmem is per slot
    assert ge.submission("/w/x.sh", request).argv == ("qsub", "-terse", "-q", "batch.q", "/w/x.sh")
    assert ge.parse_status(0, "job-ID prior name user state\n-----\n 12 0.5 toilray root r 12/02/2026\n",
                           ["12", "13"]) == {"12": hpc.RUNNING, "13": hpc.FINISHED}


def test_hpc_command_dry_run_and_mistakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text("")
    monkeypatch.setenv("TOIL_GRIDENGINE_PE", "smp")
    runner = CliRunner()
    result = runner.invoke(main, ["hpc", "gridengine", "--nodes", "1", "--cpusPerNode", "2", "--dryRun", "--",
                                  str(flow), "file:store", "--retryCount", "1"])
    assert result.exit_code == 0, result.output
    assert "#$ -pe smp 2" in result.output
    assert f"-m toilray run {flow} file:store --retryCount 1" in result.output
    result = runner.invoke(main, ["hpc", "slurm", "--dryRun", "--", str(tmp_path / "missing.py")])
    assert result.exit_code == 2 and "No such workflow script" in result.output
    result = runner.invoke(main, ["hpc", "lsf", "--slurmArgs", "-A x", "--dryRun", "--", str(flow)])
    assert result.exit_code == 2 and "--slurmArgs is for Slurm" in result.output
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch there
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["hpc", "slurm", "--", str(flow)])
    assert result.exit_code != 0 and "sbatch not found" in result.output


def test_no_allocation_outside_one_or_when_turned_off() -> None:
    assert hpc_schedulers.detect({"PATH": os.environ.get("PATH", "")}) is None
    inside = {"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "node1"}
    assert hpc_schedulers.detect(inside) is not None
    assert hpc_schedulers.detect({**inside, "TOILRAY_HPC": "0"}) is None


def test_lsf_worker_job_of_an_elastic_run() -> None:
    """--batchSystem lsf: each Ray worker node is a bsub job running toilray.lib.ray_node."""
    from toilray.elastic import ElasticSettings, ElasticWorkers, Shape

    lsf = hpc_schedulers.by_name("lsf")
    settings = ElasticSettings("lsf", Shape(4, 16 * 1024 * MB, 1), max_nodes=5, idle_time=60.0, polling=1.0,
                               queue="short", time="01:00:00", memory_is_product=True,
                               extra_args=tuple(lsf.extra_args({"TOIL_LSF_ARGS": "-P p"})))
    workers = ElasticWorkers(settings, lsf, "10.0.0.1:6379", "/tmp/toilray-u-lsf-e1", "/w/toilray-hpc/e1")
    request = workers.request(Shape(2, 8 * 1024 * MB, 1), "tag1", 3)
    lines = lsf.render_script(request).splitlines()
    assert lines[1:9] == ["#BSUB -J toilray-worker", "#BSUB -n 2", '#BSUB -R "span[ptile=2]"',
                          '#BSUB -R "rusage[mem=4096MB]"', "#BSUB -M 4096MB", '#BSUB -gpu "num=1"', "#BSUB -W 01:00",
                          "#BSUB -q short"]
    assert lines[-1].startswith("exec ")  # the node's process gets LSF's signals itself
    assert lines[-1].split()[2:] == ["-m", "toilray.lib.ray_node", "--temp-dir=/tmp/toilray-u-lsf-e1/w3",
                                     "--num-cpus=2", "--num-gpus=1", "--address=10.0.0.1:6379",
                                     "--labels=toilray-worker=tag1", f"--memory={8 * 1024 * MB}"]
    assert lsf.submission("/w/x.sh", request).argv == ("bsub", "-P", "p")

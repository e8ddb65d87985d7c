"""toilray-cwl-runner: scatter parallelism, restart, errors, containers, and conformance tests on S3.

Every run is a real ``toilray-cwl-runner`` process connected to the session's Ray (2 CPUs)
through RAY_ADDRESS; its tools are real subprocesses, and a DockerRequirement's tool runs in a
real container of the machine's engine (podman, through its Docker Engine API socket).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from cwltest.compare import CompareFail, compare
from cwltest.utils import load_and_validate_tests, shortname

WORKFLOWS = Path(__file__).parent / "workflows" / "cwl"


def find_conformance() -> Path:
    """The CWL v1.2 conformance suite: $TOILRAY_CWL_CONFORMANCE, or shared/conformance/cwl-v1.2
    beside the repository or beside one of its parents."""
    if os.environ.get("TOILRAY_CWL_CONFORMANCE"):
        return Path(os.environ["TOILRAY_CWL_CONFORMANCE"])
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "conformance" / "cwl-v1.2"
        if (candidate / "conformance_tests.yaml").exists():
            return candidate
    return Path("/work/shared/conformance/cwl-v1.2")


CONFORMANCE = find_conformance()
RUNNER = str(Path(sys.executable).parent / "toilray-cwl-runner")


def run_cwl(*args: str, env: dict[str, str], cwd: Path | str | None = None, timeout: float = 600,
            containers: bool = False) -> subprocess.CompletedProcess[str]:
    options = [] if containers else ["--no-container"]
    return subprocess.run([RUNNER, *options, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


needs_podman = pytest.mark.skipif(shutil.which("podman") is None,
                                  reason="no container engine here (.ci/setup-tests installs podman)")


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def test_a_scatter_of_60_runs_in_parallel_up_to_the_cores(tmp_path: Path, script_env: dict[str, str]) -> None:
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"items": list(range(60)), "log_dir": str(log_dir)}))
    done = run_cwl("--outdir", str(tmp_path / "out"), str(WORKFLOWS / "scatter.cwl"), str(job), env=script_env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["results"] == list(range(60))
    intervals = []
    for entry in log_dir.iterdir():
        _, start, end = entry.read_text().split()
        intervals.append((float(start), float(end)))
    assert len(intervals) == 60
    # The session's Ray has 2 CPUs and each invocation asks for one core.
    assert max_overlap(intervals) == 2


def test_restart_after_a_failed_middle_step_skips_the_first(tmp_path: Path, script_env: dict[str, str]) -> None:
    counts, flag = tmp_path / "counts", tmp_path / "fail-now"
    counts.mkdir()
    flag.write_text("")
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"count_dir": str(counts), "fail_flag": str(flag)}))
    store = f"file:{tmp_path / 'store'}"
    args = ["--jobStore", store, "--retryCount", "0", "--outdir", str(tmp_path / "out"),
            str(WORKFLOWS / "three_steps.cwl"), str(job)]

    failed = run_cwl(*args, env=script_env)
    assert failed.returncode == 1
    assert "injected failure in second" in failed.stderr  # the tool's own stderr is shown
    assert "--restart" in failed.stderr
    assert sorted(os.listdir(counts)) == ["first", "second"]

    flag.unlink()
    resumed = run_cwl("--restart", *args, env=script_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    runs = {name: (counts / name).read_text().count("run") for name in os.listdir(counts)}
    assert runs == {"first": 1, "second": 2, "third": 1}
    output = json.loads(resumed.stdout)["final"]
    assert Path(output["path"]).read_text() == "first\nsecond\nthird\n"
    assert Path(output["path"]).parent == tmp_path / "out"


def test_toilray_cwl_command_runs_a_tool(tmp_path: Path, script_env: dict[str, str]) -> None:
    (tmp_path / "in.txt").write_text("one\ntwo\n")
    (tmp_path / "job.yml").write_text("file1: {class: File, location: in.txt}\n")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "toilray"), "cwl", "--no-container", "--outdir", str(tmp_path / "out"),
         str(CONFORMANCE / "tests" / "wc-tool.cwl"), "job.yml"],
        env=script_env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    output = json.loads(done.stdout)["output"]
    assert output["basename"] == "output"
    assert Path(output["path"]).read_text().split()[0] == "2"


@pytest.mark.parametrize(("document", "job", "message"), [
    ("bad.cwl", None, "bad.cwl"),
    ("nonexistent.cwl", None, "workflow file not found"),
    ("wc-tool.cwl", "missing.yml", "missing-input.txt"),
    ("wc-tool.cwl", "wrong-type.yml", "file1"),
    ("wc-tool.cwl", "empty.yml", "file1"),
], ids=["invalid-document", "missing-workflow", "missing-input-file", "type-mismatch", "missing-input"])
def test_bad_input_gets_cwltool_message(tmp_path: Path, script_env: dict[str, str], document: str, job: str | None,
                                        message: str) -> None:
    (tmp_path / "bad.cwl").write_text("cwlVersion: v1.2\nclass: CommandLineTool\ninputs: {x: {type: Fil}}\n"
                                      "outputs: []\nbaseCommand: true\n")
    (tmp_path / "missing.yml").write_text("file1: {class: File, location: missing-input.txt}\n")
    (tmp_path / "wrong-type.yml").write_text("file1: 42\n")
    (tmp_path / "empty.yml").write_text("{}\n")
    tool = CONFORMANCE / "tests" / document if document == "wc-tool.cwl" else tmp_path / document
    done = run_cwl("--outdir", str(tmp_path / "out"), str(tool), *([job] if job else []), env=script_env,
                   cwd=tmp_path)
    assert done.returncode not in (0, None)
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.strip() in ("", "{}")


# -- DockerRequirement: the tool runs in a container -----------------------------------------------


def podman_lines(*args: str) -> list[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.split()


@needs_podman
@pytest.mark.parametrize("store", ["file", "s3"])
def test_docker_requirement_runs_in_a_container(store: str, tmp_path: Path, script_env: dict[str, str],
                                                request: pytest.FixtureRequest) -> None:
    (tmp_path / "data.txt").write_text("hello\n")
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "b.txt").write_text("inside the tree\n")
    (tmp_path / "job.yml").write_text(json.dumps({
        "data": {"class": "File", "location": "data.txt"}, "tree": {"class": "Directory", "location": "tree"},
        "host_path": str(tmp_path / "data.txt")}))
    env, store_args = script_env, ["--jobStore", f"file:{tmp_path / 'store'}"]
    if store == "s3":
        object_env = request.getfixturevalue("object_env")
        env = {**script_env, **object_env}
        store_args = ["--jobStore", f"s3://toilray-cwl-tests/container-{uuid.uuid4().hex[:8]}",
                      *[arg for name, value in object_env.items() for arg in ("--setEnv", f"{name}={value}")]]
    done = run_cwl(*store_args, "--outdir", str(tmp_path / "out"), str(WORKFLOWS / "in_container.cwl"), "job.yml",
                   env=env, cwd=tmp_path, containers=True)
    assert done.returncode == 0, done.stderr[-3000:]
    output = json.loads(done.stdout)
    report = dict(line.split(" ", 1) for line in Path(output["report"]["path"]).read_text().splitlines())
    # Inside the container: its own file system (the host's path is not there), the input
    # mounted read-only at cwltool's staging path, and the input directory's files readable.
    assert report["staged"].startswith("/var/lib/cwl/"), report
    assert report["input"] == "read-only", report
    assert report["tree"] == "inside the tree", report
    assert report["host"] == "path absent", report
    assert Path(output["copy"]["path"]).read_text() == "hello\n"
    assert (tmp_path / "data.txt").read_text() == "hello\n"
    # The container's hostname is its ID: podman ran it from the image and removed it after.
    container = report["hostname"]
    events = podman_lines("events", "--stream=false", "--since", "30m", "--filter", f"container={container}",
                          "--format", "{{.Status}}:{{.Image}}")
    assert "create:docker.io/library/debian:stable-slim" in events, events
    assert "remove:docker.io/library/debian:stable-slim" in events, events
    assert podman_lines("ps", "-a", "--filter", f"id={container}", "--format", "{{.ID}}") == []


def run_tool(tmp_path: Path, env: dict[str, str], base_command: list[str], *options: str,
             image: str | None = "debian:stable-slim", outputs: Any = (),
             **document: Any) -> subprocess.CompletedProcess[str]:
    """Run a one-tool CWL document (in a container of ``image``) with ``--retryCount 0``."""
    requirements = {**document.pop("requirements", {}),
                    **({"DockerRequirement": {"dockerPull": image}} if image else {})}
    tool = tmp_path / "tool.cwl"
    tool.write_text(json.dumps({"cwlVersion": "v1.2", "class": "CommandLineTool", "requirements": requirements,
                                "inputs": [], "outputs": outputs, "baseCommand": base_command, **document}))
    return run_cwl("--retryCount", "0", *options, "--outdir", str(tmp_path / "out"), str(tool), env=env,
                   cwd=tmp_path, containers=image is not None)


@needs_podman
def test_strict_limits_reach_the_container(tmp_path: Path, script_env: dict[str, str]) -> None:
    # cgroup v2 names, else v1's.
    show = ("cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes;"
            " cat /sys/fs/cgroup/cpu.max 2>/dev/null"
            " || echo `cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us` `cat /sys/fs/cgroup/cpu/cpu.cfs_period_us`")
    done = run_tool(tmp_path, script_env, ["sh", "-c", show], "--strict-memory-limit", "--strict-cpu-limit",
                    requirements={"ResourceRequirement": {"ramMin": 300, "coresMin": 1}},
                    outputs={"limits": "stdout"}, stdout="limits.txt")
    assert done.returncode == 0, done.stderr[-3000:]
    memory, cpu = Path(json.loads(done.stdout)["limits"]["path"]).read_text().splitlines()
    assert int(memory) == 300 * 2**20
    quota, period = cpu.split()
    assert int(quota) == int(period)  # one core


@needs_podman
def test_a_tool_failing_in_a_container_fails_the_run(tmp_path: Path, script_env: dict[str, str]) -> None:
    done = run_tool(tmp_path, script_env, ["sh", "-c", "echo leaving-with-3 >&2; exit 3"])
    assert done.returncode == 1
    assert "leaving-with-3" in done.stderr
    assert "permanentFail" in done.stderr


@needs_podman
def test_missing_image_fails_with_one_line(tmp_path: Path, script_env: dict[str, str]) -> None:
    done = run_tool(tmp_path, script_env, ["true"], image="toilray-test/no-such-image:1")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    reason = "ContainerImageNotFoundError: Container image toilray-test/no-such-image:1 not found by docker"
    assert [line for line in done.stderr.splitlines() if reason in line], done.stderr[-3000:]


@pytest.mark.parametrize("image", [None, pytest.param("debian:stable-slim", marks=needs_podman)],
                         ids=["no-container", "container"])
def test_an_output_linking_outside_the_tool_is_not_retrieved(image: str | None, tmp_path: Path,
                                                              script_env: dict[str, str]) -> None:
    # In a container the link names a path of the host's (the container has no such file): no
    # less outside the tool's output directory.
    outside = tmp_path / "outside.txt"
    outside.write_text("not the tool's\n")
    done = run_tool(tmp_path, script_env, ["ln", "-s", str(outside), "link.txt"], image=image,
                    outputs={"link": {"type": "File", "outputBinding": {"glob": "link.txt"}}})
    assert done.returncode == 1
    assert f"OutputLinkOutside: The output link.txt is a link to {outside}" in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr


# -- conformance tests with the job store on S3 (moto's server) -------------------------------------

S3_SUBSET = [
    "wf_wc_parseInt", "wf_wc_scatter_multiple_nested", "wf_scatter_two_dotproduct", "nested_workflow",
    "directory_output", "directory_secondaryfiles", "job_input_secondary_subdirs", "input_dir_recurs_copy_writable",
    "exprtool_directory_literal", "stage_file_array", "listing_loadListing_deep", "wf_two_inputfiles_namecollision",
    "workflow_step_in_loadContents", "secondary_files_workflow_propagation", "valuefrom_wf_step",
    "scatter_embedded_subworkflow",
]
# In containers: files staged from the node cache, outputs (an output directory, secondary files
# of an array, an initial work directory's) stored on S3.
S3_DOCKER_SUBSET = ["dockeroutputdir", "filesarray_secondaryfiles", "initial_workdir_output", "stdin_shorcut"]


def conformance_tests() -> dict[str, dict[str, Any]]:
    """The suite's tests by id, with its ``$import``ed files expanded as cwltest does."""
    tests, _ = load_and_validate_tests(str(CONFORMANCE / "conformance_tests.yaml"))
    return {shortname(test["id"]): test for test in tests}


@pytest.mark.parametrize("test_id", S3_SUBSET + [pytest.param(test_id, marks=needs_podman)
                                                 for test_id in S3_DOCKER_SUBSET])
def test_conformance_subset_with_s3_job_store(test_id: str, tmp_path: Path, script_env: dict[str, str],
                                              object_env: dict[str, str]) -> None:
    test = conformance_tests()[test_id]
    store = f"s3://toilray-cwl-tests/{test_id}-{uuid.uuid4().hex[:8]}"
    set_env = [arg for name, value in object_env.items() for arg in ("--setEnv", f"{name}={value}")]
    args = ["--jobStore", store, *set_env, "--outdir", str(tmp_path / "out"), test["tool"]]
    if test.get("job"):
        args.append(test["job"])
    done = run_cwl(*args, env={**script_env, **object_env}, cwd=CONFORMANCE, containers=test_id in S3_DOCKER_SUBSET)
    assert done.returncode == 0, done.stderr[-3000:]
    try:
        compare(test["output"], json.loads(done.stdout))
    except CompareFail as exc:
        pytest.fail(f"{test_id}: {exc}")

"""``toilray server``: the WES API as clients use it — curl as in Toil's manual, wes-client,
schemathesis — against a real server process whose runs execute on the session's Ray."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from browser import open_page
from conftest import REPO
from test_cwl import CONFORMANCE, needs_podman
from wes import TOKEN, WesServer, wait_for

from toilray.server.attachments import AttachmentError, write_attachments

WES_FILES = REPO / "tests" / "workflows" / "wes"
MAX_UPLOAD = 1_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ray_address: str) -> Iterator[WesServer]:
    base = tmp_path_factory.mktemp("wes")
    token = base / "token"
    token.write_text(TOKEN + "\n")
    env = dict(os.environ, RAY_ADDRESS=ray_address, PYTHONUNBUFFERED="1")
    wes = WesServer(base / "workflows", env, ("--token-file", str(token), "--max_upload", str(MAX_UPLOAD)))
    wes.start()
    yield wes
    wes.stop()


def curl(*args: str) -> dict[str, object]:
    done = subprocess.run(["curl", "--silent", "--show-error", "--location", *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_manual_curl_examples(server: WesServer) -> None:
    """The manual's example: multipart POST with attachments and ';filename=' paths, status, the run log."""
    auth = f"Authorization: Bearer {TOKEN}"
    posted = curl("--request", "POST", f"{server.api}/runs", "--header", auth,
                  "--form", 'workflow_url="example.cwl"',
                  "--form", 'workflow_type="cwl"',
                  "--form", 'workflow_type_version="v1.0"',
                  "--form", 'workflow_params="{\\"message\\": \\"Hello world!\\"}"',
                  "--form", f'workflow_attachment=@"{WES_FILES}/example.cwl"',
                  "--form", f'workflow_attachment=@"{WES_FILES}/2.fasta";filename=inputs/test.fasta',
                  "--form", f'workflow_attachment=@"{WES_FILES}/2.fastq";filename=inputs/test.fastq')
    run_id = str(posted["run_id"])
    execution = server.work_dir / run_id / "execution"
    assert sorted(str(p.relative_to(execution)) for p in execution.rglob("*")) == [
        "example.cwl", "inputs", "inputs/test.fasta", "inputs/test.fastq", "wes_inputs.json"]
    assert (execution / "inputs/test.fasta").read_bytes() == (WES_FILES / "2.fasta").read_bytes()
    wait_for(lambda: curl("--header", auth, f"{server.api}/runs/{run_id}/status")["state"] == "COMPLETE",
             240, "the CWL run to complete")
    log = curl("--header", auth, f"{server.api}/runs/{run_id}")
    assert log["request"] == {  # type: ignore[comparison-overlap]
        "workflow_attachment": ["example.cwl", "inputs/test.fasta", "inputs/test.fastq"],
        "workflow_url": "example.cwl", "workflow_type": "cwl", "workflow_type_version": "v1.0",
        "workflow_params": {"message": "Hello world!"}, "tags": {}, "workflow_engine_parameters": {},
        "workflow_engine": None, "workflow_engine_version": None}
    run_log = log["run_log"]
    assert isinstance(run_log, dict) and run_log["exit_code"] == 0 and run_log["end_time"]
    output = log["outputs"]["output"]  # type: ignore[index]
    assert Path(output["path"]).read_text() == "Hello world!\n"
    stderr = requests.get(run_log["stderr"], headers=server.headers(), timeout=30)
    assert "Final process status is success" in stderr.text
    # The tasks come from the job store's records: the CWL tool's job, finished.
    tasks = server.get(f"/runs/{run_id}/tasks")["task_logs"]
    assert tasks and all(task["exit_code"] == 0 for task in tasks), tasks
    assert server.get(f"/runs/{run_id}/tasks/{tasks[0]['id']}")["name"] == tasks[0]["name"]
    listed = server.get("/runs")["runs"]
    assert {"run_id": run_id, "state": "COMPLETE"}.items() <= next(r for r in listed if r["run_id"] == run_id).items()


def test_wdl_workflow_runs_and_reports_its_outputs(server: WesServer) -> None:
    """A WDL run through the server: COMPLETE, and its outputs are the runner's outputs JSON."""
    assert server.get("/service-info")["workflow_type_versions"]["WDL"]["workflow_type_version"] == [
        "draft-2", "1.0", "1.1"]
    posted = requests.post(f"{server.api}/runs", headers=server.headers(), timeout=60, data={
        "workflow_url": "hello.wdl", "workflow_type": "WDL", "workflow_type_version": "1.0",
        "workflow_params": json.dumps({"hello.name": "WES"})},
        files=[("workflow_attachment", ("hello.wdl", (WES_FILES / "hello.wdl").read_bytes()))])
    assert posted.status_code == 200, posted.text
    run_id = posted.json()["run_id"]
    wait_for(lambda: server.get(f"/runs/{run_id}/status")["state"] in ("COMPLETE", "EXECUTOR_ERROR"),
             240, "the WDL run to end")
    log = server.get(f"/runs/{run_id}")
    assert log["state"] == "COMPLETE", log
    assert log["outputs"] == {"hello.out": "Hello WES"}


def test_python_workflow_cancel_and_engine_parameters(server: WesServer, tmp_path: Path) -> None:
    """A py run takes its workflow_params as options; cancel stops its leader; only allowed engine
    parameters pass."""
    marks = tmp_path / "marks"
    marks.mkdir()
    fields = {"workflow_url": "gated.py", "workflow_type": "py", "workflow_type_version": "3",
              "workflow_params": json.dumps({"marks": str(marks), "gate": str(tmp_path / "never"), "tag": "c"}),
              "workflow_engine_parameters": json.dumps({"--logLevel": "INFO"})}
    run_id = server.submit(fields, [("workflow_attachment", ("gated.py", (WES_FILES / "gated.py").read_bytes()))])
    wait_for(lambda: (marks / "first-c").exists(), 240, "the first job to run")
    assert "--logLevel=INFO" in server.get(f"/runs/{run_id}")["run_log"]["cmd"]
    leader = server.leaders()[run_id]
    cancelled = requests.post(f"{server.api}/runs/{run_id}/cancel", headers=server.headers(), timeout=30)
    assert cancelled.json() == {"run_id": run_id}
    assert server.wait_state(run_id, {"CANCELED", "COMPLETE", "EXECUTOR_ERROR"}) == "CANCELED"
    assert run_id not in server.leaders() and not os.path.exists(f"/proc/{leader}/status")
    refused = requests.post(f"{server.api}/runs", headers=server.headers(), timeout=30,
                            data=dict(fields, workflow_engine_parameters='{"--workDir": "/"}'),
                            files=[("workflow_attachment", ("gated.py", b"pass"))])
    assert refused.status_code == 400 and "--workDir" in refused.json()["msg"]


def test_unauthenticated_requests_get_401(server: WesServer) -> None:
    info = requests.get(f"{server.api}/service-info", timeout=30)
    assert info.status_code == 200
    # WDL appears once its runner is installed, with the versions it runs.
    wdl = {"WDL"} if importlib.util.find_spec("toilray.wdl") else set()
    versions = info.json()["workflow_type_versions"]
    assert set(versions) == {"CWL", "py"} | wdl
    assert versions["CWL"]["workflow_type_version"] == ["v1.0", "v1.1", "v1.2"]
    assert info.json()["supported_wes_versions"][-1] == "1.1.0"
    for method, path in (("GET", "/runs"), ("POST", "/runs"), ("GET", "/runs/x"), ("GET", "/runs/x/status"),
                         ("POST", "/runs/x/cancel"), ("GET", "/runs/x/tasks"), ("GET", "/runs/x/tasks/y"),
                         ("GET", "/runs/x/stderr")):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            response = requests.request(method, server.api + path, headers=headers, timeout=30)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["status_code"] == 401


@pytest.mark.parametrize("name", ["../x", "/etc/passwd-wes", "inputs/../../x", "a/../../../x"])
def test_path_traversal_is_refused(server: WesServer, name: str) -> None:
    before = set(os.listdir(server.work_dir))
    response = requests.post(f"{server.api}/runs", headers=server.headers(), timeout=30,
                             data={"workflow_url": "example.cwl", "workflow_type": "CWL",
                                   "workflow_type_version": "v1.0"},
                             files=[("workflow_attachment", ("example.cwl", b"cwlVersion: v1.0")),
                                    ("workflow_attachment", (name, b"escaped"))])
    assert response.status_code == 400, response.text
    assert set(os.listdir(server.work_dir)) == before
    assert not (server.work_dir.parent / "x").exists() and not Path("/etc/passwd-wes").exists()
    assert not any(p.name == "x" for p in server.work_dir.parent.rglob("x"))


def test_workflow_url_outside_the_run_and_big_uploads_are_refused(server: WesServer) -> None:
    for url in ("/etc/passwd", "file:///etc/passwd", "../token", "missing.cwl"):
        response = requests.post(f"{server.api}/runs", headers=server.headers(), timeout=30,
                                 data={"workflow_url": url, "workflow_type": "CWL", "workflow_type_version": "v1.0"},
                                 files=[("workflow_attachment", ("example.cwl", b"cwlVersion: v1.0"))])
        assert response.status_code == 400, (url, response.text)
    response = requests.post(f"{server.api}/runs", headers=server.headers(), timeout=30,
                             data={"workflow_url": "big", "workflow_type": "CWL", "workflow_type_version": "v1.0"},
                             files=[("workflow_attachment", ("big", b"x" * (MAX_UPLOAD + 1)))])
    assert response.status_code == 413, response.text
    # A body that is not multipart at all (schemathesis found Starlette's own answer to it).
    response = requests.post(f"{server.api}/runs", timeout=30, data=b"--x\r\n[None]--x--\r\n",
                             headers={**server.headers(), "Content-Type": "multipart/form-data; boundary=x"})
    assert response.status_code == 400 and set(response.json()) == {"msg", "status_code"}, response.text


def test_attachment_through_a_symlink_is_refused(tmp_path: Path) -> None:
    """A name that passes through a link in the run's directory never writes where it points."""
    root, outside = tmp_path / "run", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    (root / "file-link").symlink_to(outside / "target")
    for name in ("link/x", "file-link"):
        with pytest.raises(AttachmentError), open(WES_FILES / "2.fasta", "rb") as stream:
            write_attachments(str(root), [(name, stream)], MAX_UPLOAD)
    assert list(outside.iterdir()) == []


def test_no_unauthenticated_listening_beyond_loopback(tmp_path: Path) -> None:
    for args, said in ((["--host", "0.0.0.0", "--insecure-no-auth"], "refusing to listen on 0.0.0.0"),
                       ([], "no token")):
        done = subprocess.run([sys.executable, "-m", "toilray", "server", "--port", "1",
                               "--work_dir", str(tmp_path / "w"), *args],
                              capture_output=True, text=True, timeout=120,
                              env={k: v for k, v in os.environ.items() if k != "TOILRAY_WES_TOKEN"})
        assert done.returncode != 0
        assert len(done.stderr.strip().splitlines()) == 1 and said in done.stderr, done.stderr


def test_sigkill_of_the_server_loses_no_run(tmp_path: Path, ray_address: str) -> None:
    """Two runs running and one queued when the server is SIGKILLed (one leader killed with it):
    after a restart all three complete, and no job that had finished ran again."""
    token = tmp_path / "token"
    token.write_text(TOKEN)
    env = dict(os.environ, RAY_ADDRESS=ray_address, PYTHONUNBUFFERED="1")
    wes = WesServer(tmp_path / "workflows", env, ("--token-file", str(token), "-w", "2"))
    marks, gate = tmp_path / "marks", tmp_path / "gate"
    marks.mkdir()
    script = [("workflow_attachment", ("gated.py", (WES_FILES / "gated.py").read_bytes()))]

    def fields(tag: str) -> dict[str, str]:
        return {"workflow_url": "gated.py", "workflow_type": "py", "workflow_type_version": "3",
                "workflow_params": json.dumps({"marks": str(marks), "gate": str(gate), "tag": tag})}

    wes.start()
    try:
        runs = {tag: wes.submit(fields(tag), script) for tag in ("a", "b", "c")}
        wait_for(lambda: (marks / "first-a").exists() and (marks / "first-b").exists(), 240,
                 "the first jobs of two runs to finish")
        assert wes.get(f"/runs/{runs['c']}/status")["state"] == "QUEUED"
        leaders = wes.leaders()
        assert set(leaders) == {runs["a"], runs["b"]}
        wes.kill()
        # Run a's leader dies too: it must be resumed from its job store, not adopted.
        os.killpg(leaders[runs["a"]], signal.SIGKILL)
        wait_for(lambda: runs["a"] not in wes.leaders(), 60, "run a's leader to die")
        wes.start()
        for tag in ("a", "b"):
            # a goes back to QUEUED, then runs again (resumed) within a moment.
            assert wes.wait_state(runs[tag], {"RUNNING", "COMPLETE", "EXECUTOR_ERROR"}) == "RUNNING"
        assert wes.leaders()[runs["b"]] == leaders[runs["b"]]
        gate.touch()
        for tag, run_id in runs.items():
            assert wes.wait_state(run_id, {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"}) == "COMPLETE", (
                tag, (wes.work_dir / run_id / "stderr").read_text()[-3000:])
            assert (wes.work_dir / run_id / "stdout").read_text().strip().endswith(tag)
        # Every first job ran exactly once (a's was finished when its leader died).
        for tag in ("a", "b", "c"):
            assert len((marks / f"first-{tag}").read_text().split()) == 1, tag
        assert "--restart" in wes.get(f"/runs/{runs['a']}")["run_log"]["cmd"]
        assert "adopted" in "\n".join(wes.get(f"/runs/{runs['b']}")["run_log"]["system_logs"])
    finally:
        wes.stop()


def test_schemathesis_finds_no_error_and_no_schema_violation(server: WesServer, tmp_path: Path) -> None:
    """A bounded schemathesis run against the served OpenAPI document, with one real run (and one of
    its tasks) for the operations that need an ID; the failing-check names are what a failure prints."""
    run_id = server.submit({"workflow_url": "gated.py", "workflow_type": "py", "workflow_type_version": "3",
                            "workflow_params": json.dumps({"marks": str(tmp_path), "gate": str(tmp_path),
                                                           "tag": "s"})},
                           [("workflow_attachment", ("gated.py", (WES_FILES / "gated.py").read_bytes()))])
    assert server.wait_state(run_id, {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"}) == "COMPLETE"
    task_id = server.get(f"/runs/{run_id}/tasks")["task_logs"][0]["id"]
    config = tmp_path / "schemathesis.toml"
    config.write_text(f'[parameters]\n"path.run_id" = "{run_id}"\n"path.task_id" = "{task_id}"\n')
    report = tmp_path / "junit.xml"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config), "run",
         f"{server.api}/openapi.json", "-H", f"Authorization: Bearer {TOKEN}",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance,response_headers_conformance,negative_data_rejection,"
                     "missing_required_header,ignored_auth",
         "--max-examples", "30", "--seed", "2", "--phases", "examples,coverage,fuzzing",
         "--report", "junit", "--report-junit-path", str(report)],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, NO_COLOR="1"))
    assert done.returncode == 0, done.stdout[-5000:]
    assert "11 passed" in done.stdout or " passed" in done.stdout, done.stdout[-2000:]
    assert report.exists()


def test_page_lists_runs_with_live_state_and_logs(server: WesServer, tmp_path: Path) -> None:
    """The page at / in headless Chromium: a run's state changes on the page without a reload,
    and its stderr link shows the run's log."""
    gate = tmp_path / "gate"
    run_id = server.submit({"workflow_url": "gated.py", "workflow_type": "py", "workflow_type_version": "3",
                            "workflow_params": json.dumps({"marks": str(tmp_path), "gate": str(gate), "tag": "p"})},
                           [("workflow_attachment", ("gated.py", (WES_FILES / "gated.py").read_bytes()))])
    server.wait_state(run_id, {"RUNNING"})
    state = f"document.querySelector('#run-{run_id} .state')?.textContent"
    with open_page(f"{server.url}/#token={TOKEN}") as page:
        wait_for(lambda: page.evaluate(state) == "RUNNING", 120, "the page to show the run RUNNING")
        # The token left the address bar once read (it stays in the tab's sessionStorage).
        assert TOKEN not in page.evaluate("location.href")
        gate.touch()
        wait_for(lambda: page.evaluate(state) == "COMPLETE", 240, "the page to show the run COMPLETE")
        page.evaluate(f"document.querySelector('#run-{run_id} .log-stderr').click()")
        wait_for(lambda: "Workflow finished" in (page.evaluate("document.getElementById('log').textContent") or ""),
                 60, "the run's stderr on the page")
        page.evaluate(f"document.querySelector('#run-{run_id} .log-tasks').click()")
        wait_for(lambda: "wait_for_gate" in (page.evaluate("document.getElementById('log').textContent") or ""),
                 60, "the run's tasks on the page")
    with open_page(f"{server.url}/") as page:
        # Without the token the page asks for one and shows no run.
        wait_for(lambda: page.evaluate("document.getElementById('auth')?.hidden === false"), 60, "the token prompt")
        assert page.evaluate("document.querySelectorAll('#runs tr').length") == 0


def test_wes_client_runs_a_cwl_workflow(tmp_path: Path, ray_address: str, object_env: dict[str, str]) -> None:
    """wes-service's client end to end. It sends no Authorization header with its POST, so it
    talks to a server on loopback with --insecure-no-auth (what that option is for). The server
    copies the outputs to --dest_bucket_base (moto's S3 server)."""
    import s3fs

    s3 = s3fs.S3FileSystem()
    s3.mkdir("wes-outputs")
    env = dict(os.environ, RAY_ADDRESS=ray_address, PYTHONUNBUFFERED="1", **object_env)
    env.pop("TOILRAY_WES_TOKEN", None)
    wes = WesServer(tmp_path / "workflows", env, ("--insecure-no-auth", "--dest_bucket_base", "s3://wes-outputs/runs",
                                                  "--cors", "--cors_origins", "http://portal.example",
                                                  "--swagger_ui"))
    wes.start()
    try:
        preflight = requests.options(f"{wes.api}/runs", timeout=30, headers={
            "Origin": "http://portal.example", "Access-Control-Request-Method": "POST"})
        assert preflight.headers.get("access-control-allow-origin") == "http://portal.example"
        other = requests.get(f"{wes.api}/runs", timeout=30, headers={"Origin": "http://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers
        assert "swagger-ui" in requests.get(f"{wes.api}/ui", timeout=30).text
        done = subprocess.run(
            [str(Path(sys.executable).parent / "wes-client"), f"--host=127.0.0.1:{wes.port}", "--proto=http",
             str(WES_FILES / "example.cwl"), str(WES_FILES / "example-job.json")],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "State is COMPLETE" in done.stderr
        outputs = json.loads(done.stdout)
        run_id = json.loads(subprocess.run(
            [str(Path(sys.executable).parent / "wes-client"), f"--host=127.0.0.1:{wes.port}", "--proto=http",
             "--list"], capture_output=True, text=True, timeout=120).stdout)["runs"][0]["run_id"]
        assert outputs["output"]["location"] == f"s3://wes-outputs/runs/{run_id}/output.txt", outputs
        s3.invalidate_cache()
        assert s3.cat_file(f"wes-outputs/runs/{run_id}/output.txt") == b"Hello from wes-client\n"
        listed = subprocess.run([str(Path(sys.executable).parent / "wes-client"), f"--host=127.0.0.1:{wes.port}",
                                 "--proto=http", "--list"], capture_output=True, text=True, timeout=120)
        assert json.loads(listed.stdout)["runs"][0]["state"] == "COMPLETE"
    finally:
        wes.stop()


# A spread of the CWL v1.2 suite: a tool's command line, InitialWorkDir with expressions, a
# container (podman), stdin/stdout, an ExpressionTool, scatter, dot-product scatter, a subworkflow.
CONFORMANCE_SUBSET = ("cl_basic_generation", "initworkdir_expreng_requirements", "stdout_redirect_docker",
                      "stdinout_redirect_docker", "expression_any", "wf_wc_scatter", "wf_scatter_two_dotproduct",
                      "nested_workflow")


@needs_podman
def test_cwl_conformance_subset_through_wes(server: WesServer, tmp_path: Path) -> None:
    """cwltest runs a subset of the conformance suite with a cwl-runner that submits each test to
    the server (tests/wes_cwl_runner.py), as Toil's own WES tests do."""
    runner = tmp_path / "wes-cwl-runner"
    runner.write_text(f"#!/bin/sh\nexec {sys.executable} {REPO / 'tests' / 'wes_cwl_runner.py'} \"$@\"\n")
    runner.chmod(0o755)
    junit = tmp_path / "conformance.xml"
    ids = [test.get("id") for test in yaml.safe_load((CONFORMANCE / "conformance_tests.yaml").read_text())]
    numbers = ",".join(str(ids.index(name) + 1) for name in CONFORMANCE_SUBSET)
    env = dict(server.env, WES_URL=server.url, WES_TOKEN=TOKEN)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cwltest"), "--test", "conformance_tests.yaml", "--tool", str(runner),
         "-j2", "-n", numbers, f"--junit-xml={junit}"],
        cwd=CONFORMANCE, env=env, capture_output=True, text=True, timeout=900)
    cases = list(ElementTree.parse(junit).getroot().iter("testcase"))
    failed = [c.get("name") for c in cases if c.find("failure") is not None or c.find("error") is not None
              or c.find("skipped") is not None]
    assert len(cases) == len(CONFORMANCE_SUBSET) and not failed, (failed, done.stdout[-3000:])

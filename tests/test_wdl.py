"""The WDL runner: the Toil manual's hello world, a wide scatter, a failure then --restart, bad
input, an import from a web server run by the docker back end, and an S3 job store, each as a
user runs them (``toilray-wdl-runner`` subprocesses on the session's Ray)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from test_cwl import max_overlap, needs_podman

from toilray.lib import container_engine

RUNNER = str(Path(sys.executable).parent / "toilray-wdl-runner")


def run_wdl(*args: str, env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNNER, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@needs_podman
def test_manual_hello_world(tmp_path: Path, script_env: dict[str, str]) -> None:
    # The Toil manual's draft-2 example, run as it shows: the output file lands here.
    (tmp_path / "wdl-helloworld.wdl").write_text(
        "workflow write_simple_file {\n  call write_file\n}\ntask write_file {\n  String message\n"
        "  command { echo ${message} > wdl-helloworld-output.txt }\n"
        '  output { File test = "wdl-helloworld-output.txt" }\n}\n')
    (tmp_path / "wdl-helloworld.json").write_text('{"write_simple_file.write_file.message": "Hello world!"}')
    done = run_wdl("wdl-helloworld.wdl", "wdl-helloworld.json", env=script_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "wdl-helloworld-output.txt").read_text() == "Hello world!\n"
    outputs = json.loads(done.stdout)
    assert outputs == {"write_simple_file.write_file.test": str(tmp_path / "wdl-helloworld-output.txt")}


SCATTER = """version 1.0
workflow wide {
  input { Int n  String log_dir }
  scatter (i in range(n)) { call square { input: x = i, log_dir = log_dir } }
  output { Array[Int] squares = square.y }
}
task square {
  input { Int x  String log_dir }
  command <<<
    date +%s.%N > ~{log_dir}/~{x}.start
    sleep 0.2
    date +%s.%N > ~{log_dir}/~{x}.end
    echo $(( ~{x} * ~{x} ))
  >>>
  output { Int y = read_int(stdout()) }
  runtime { cpu: 1 }
}
"""


def test_scatter_of_200_natively(tmp_path: Path, script_env: dict[str, str]) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (tmp_path / "wide.wdl").write_text(SCATTER)
    (tmp_path / "in.json").write_text(json.dumps({"wide.n": 200, "wide.log_dir": str(logs)}))
    done = run_wdl("wide.wdl", "in.json", "--container", "none", "-o", str(tmp_path / "out"), env=script_env,
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {"wide.squares": [i * i for i in range(200)]}
    intervals = [(float((logs / f"{i}.start").read_text()), float((logs / f"{i}.end").read_text()))
                 for i in range(200)]
    # The session's Ray has 2 CPUs, and each task asks for one core.
    assert max_overlap(intervals) <= 2


CHAIN = """version 1.0
workflow chain {
  input { String counts  String fixed }
  call step as one { input: name = "one", counts = counts, fixed = fixed, previous = "start" }
  call step as two { input: name = "two", counts = counts, fixed = fixed, previous = one.out }
  call step as three { input: name = "three", counts = counts, fixed = fixed, previous = two.out }
  output { String last = three.out }
}
task step {
  input { String name  String counts  String fixed  String previous }
  command <<<
    echo run >> ~{counts}/~{name}
    if [ "~{name}" = two ] && [ ! -e ~{fixed} ]; then echo "step two cannot go on: marker-7f3a" >&2; exit 3; fi
    echo "~{previous}-~{name}"
  >>>
  output { String out = read_string(stdout()) }
}
"""


def test_failure_then_restart(tmp_path: Path, script_env: dict[str, str]) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    fixed = tmp_path / "fixed"
    (tmp_path / "chain.wdl").write_text(CHAIN)
    (tmp_path / "in.json").write_text(json.dumps({"chain.counts": str(counts), "chain.fixed": str(fixed)}))
    store = tmp_path / "store"
    common = ("chain.wdl", "in.json", "--container", "none", "--jobStore", str(store), "-o", str(tmp_path / "out"))
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**script_env, "TMPDIR": str(temp)}
    failed = run_wdl(*common, env=env, cwd=tmp_path)
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "marker-7f3a" in failed.stderr
    assert store.exists()
    fixed.touch()
    resumed = run_wdl(*common, "--restart", env=env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout) == {"chain.last": "start-one-two-three"}
    runs = {name: len((counts / name).read_text().splitlines()) for name in ("one", "two", "three")}
    assert runs == {"one": 1, "two": 2, "three": 1}
    # Neither the failed run nor the resumed one left its leader's scratch behind.
    assert sorted(path.name for path in temp.iterdir()) == []


GOOD = """version 1.0
workflow w {
  input { Int n }
  output { Int m = n + 1 }
}
"""


@pytest.mark.parametrize(("document", "inputs", "message"), [
    ("version 1.0\nworkflow w {\n  input { Int n }\n  output { Int m = n + }\n}\n", '{"w.n": 1}', "w.wdl:4:"),
    ("version 1.0\nworkflow w {\n  input { Int n }\n  output { Array[Int] m = n }\n}\n", '{"w.n": 1}', "w.wdl:4:"),
    (GOOD, "{}", "missing required inputs"),
    (GOOD, '{"w.n": 1', "not JSON"),
    (GOOD, '{"w.n": "one"}', "w.n"),
])
def test_bad_input(tmp_path: Path, document: str, inputs: str, message: str) -> None:
    # No Ray address: a mistake is reported before the run would look for a Ray.
    (tmp_path / "w.wdl").write_text(document)
    (tmp_path / "in.json").write_text(inputs)
    store = tmp_path / "store"
    done = run_wdl("w.wdl", "in.json", "--jobStore", str(store), env=dict(os.environ), cwd=tmp_path, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not store.exists()


needs_docker = pytest.mark.skipif(shutil.which("docker") is None or container_engine.docker_host() is None,
                                  reason="no docker command or no Docker-API socket (.ci/setup-tests starts podman's)")

LIBRARY = """version 1.0
import "helpers/more.wdl" as more
task shout {
  input { String text }
  command <<<
    echo ~{text} | tr a-z A-Z
    if [ -e /run/.containerenv ]; then echo container; else echo host; fi > where.txt
  >>>
  output { String loud = read_string(stdout())  File where = "where.txt" }
  runtime { docker: "ubuntu:22.04" }
}
"""
HELPERS = """version 1.0
task unused { command <<< true >>> }
"""


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1 serving a library of WDL documents; its URL and the
    paths it was asked for."""
    served = tmp_path / "served"
    (served / "helpers").mkdir(parents=True)
    (served / "lib.wdl").write_text(LIBRARY)
    (served / "helpers" / "more.wdl").write_text(HELPERS)
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", asked
    server.shutdown()
    thread.join()


@needs_docker
def test_web_import_run_by_the_docker_back_end(tmp_path: Path, script_env: dict[str, str],
                                               web_server: tuple[str, list[str]]) -> None:
    url, asked = web_server
    (tmp_path / "main.wdl").write_text(
        f'version 1.0\nimport "{url}/lib.wdl" as lib\n'
        "workflow w {\n  input { String text }\n  call lib.shout { input: text = text }\n"
        "  output { String loud = shout.loud  File where = shout.where }\n}\n")
    (tmp_path / "in.json").write_text('{"w.text": "hey"}')
    done = run_wdl("main.wdl", "in.json", "--container", "docker", "-o", str(tmp_path / "out"), env=script_env,
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = json.loads(done.stdout)
    assert outputs["w.loud"] == "HEY"
    # The import's own relative import was fetched from the server, next to it.
    assert asked == ["/lib.wdl", "/helpers/more.wdl"]
    # The command ran in a container: podman marks its containers (this machine has no mark).
    assert Path(outputs["w.where"]).read_text() == "container\n"


S3_WORKFLOW = """version 1.0
workflow s3flow {
  input { File data }
  call count { input: data = data }
  call double { input: counted = count.out }
  output { File result = double.out  Int lines = read_int(count.out) }
}
task count {
  input { File data }
  command <<< wc -l < ~{data} > n.txt >>>
  output { File out = "n.txt" }
}
task double {
  input { File counted }
  command <<< echo $(( $(cat ~{counted}) * 2 )) > d.txt >>>
  output { File out = "d.txt" }
}
"""


def test_s3_job_store(tmp_path: Path, script_env: dict[str, str], object_env: dict[str, str]) -> None:
    # The input file, the calls' files and the workflow's read of one (in the leader) all go
    # through the job store on moto's S3 server: workers share no file system with the leader.
    (tmp_path / "s3flow.wdl").write_text(S3_WORKFLOW)
    (tmp_path / "data.txt").write_text("a\nb\nc\n")
    (tmp_path / "in.json").write_text('{"s3flow.data": "data.txt"}')
    bucket, prefix = "toilray-wdl-tests", f"s3flow-{uuid.uuid4().hex[:8]}"
    set_env = [arg for name, value in object_env.items() for arg in ("--setEnv", f"{name}={value}")]
    # Kept after success (--clean never), to be looked at.
    done = run_wdl("s3flow.wdl", "in.json", "--container", "none", "--jobStore", f"s3://{bucket}/{prefix}",
                   "--clean", "never", *set_env, "-o", str(tmp_path / "out"), env={**script_env, **object_env},
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = json.loads(done.stdout)
    assert outputs["s3flow.lines"] == 3
    assert Path(outputs["s3flow.result"]).read_text().strip() == "6"
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    assert listed.get("KeyCount", 0) > 0


PARSE = """
import json, sys
import WDL
from toilray.wdl import parsers
if sys.argv[1] == "kept":
    parsers.keep_on_disk()
try:
    document = WDL.load(sys.argv[2])
    print(json.dumps([[c.pos.line, c.pos.column, c.text] for c in document.source_comments if c is not None]))
except WDL.Error.SyntaxError as exc:
    print(json.dumps([exc.pos.line, exc.pos.column, str(exc).splitlines()[0]]))
"""


@pytest.mark.parametrize("text", [
    "version 1.0\n# first\nworkflow w {\n  input { Int n }  # the input\n  output { Int m = n + 1 }\n}\n",
    "version 1.1\nworkflow w {\n  input { Int n }\n  output { Int m = n + }\n}\n",
    "workflow w {\n  # draft-2\n  Int n\n}\n",
])
def test_parsers_kept_on_disk_parse_as_miniwdl_does(tmp_path: Path, text: str) -> None:
    """The first run builds and keeps the parser, the next reads it; both see the comments and
    the syntax errors miniwdl's own parser sees."""
    (tmp_path / "w.wdl").write_text(text)
    env = {**os.environ, "TOILRAY_HOME": str(tmp_path / "home")}

    def parse(mode: str) -> str:
        done = subprocess.run([sys.executable, "-c", PARSE, mode, str(tmp_path / "w.wdl")], env=env,
                              capture_output=True, text=True, timeout=120, check=True)
        return done.stdout

    plain = parse("plain")
    assert not (tmp_path / "home" / "wdl-parsers").exists()
    assert parse("kept") == plain
    kept = list((tmp_path / "home" / "wdl-parsers").iterdir())
    assert [path.suffix for path in kept] == [".lark"]
    assert parse("kept") == plain
    assert list((tmp_path / "home" / "wdl-parsers").iterdir()) == kept

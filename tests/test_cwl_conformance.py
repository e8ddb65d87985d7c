"""The CWL v1.2 conformance suite, run by cwltest against toilray-cwl-runner, with containers.

cwltest runs every test of ``conformance_tests.yaml`` as its own ``toilray-cwl-runner``
process (three at a time), each connecting to the session's Ray. A tool with a DockerRequirement
(under ``requirements`` or ``hints``) runs in a container of the machine's engine, as by
default: podman, through its Docker Engine API socket, with the stand-in images (a Debian 12
userland under the names the suite pulls) that .ci/setup-tests builds. The README lists, with
reasons, the tests expected to fail here.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from test_cwl import CONFORMANCE, RUNNER, needs_podman

pytestmark = pytest.mark.slow

# The bar of the issue that brought containers: no fewer than 375 of 378 (cwltool in docker mode
# against the same engine and images passed 375, though only because podman's Docker API lost
# the exit status of `docker run --rm`: networkaccess's failure counted as a pass).
REQUIRED_PASSES = 375

EXPECTED_FAILURES = {
    # Its tool fetches http://commonwl.org: no network is reachable from this machine.
    "networkaccess",
    # A file name with '#', which cwltool's default strict path check rejects (it passes with
    # --relax-path-checks), in cwltool too.
    "filename_with_hash_mark",
}


@needs_podman
def test_conformance_suite(tmp_path: Path, script_env: dict[str, str]) -> None:
    junit = tmp_path / "conformance.xml"
    cwltest = str(Path(sys.executable).parent / "cwltest")
    # A bound for a loaded machine, not the expected time: containers made the whole suite take
    # over 25 minutes on a 2-core machine that other test runs kept busy.
    done = subprocess.run(
        [cwltest, "--test", "conformance_tests.yaml", "--tool", RUNNER, "-j3", f"--junit-xml={junit}"],
        cwd=CONFORMANCE, env=script_env, capture_output=True, text=True, timeout=2400)
    cases = ElementTree.parse(junit).getroot().iter("testcase")
    failed, passed, unsupported = set(), set(), set()
    for case in cases:
        name = case.get("file") or case.get("name") or "?"
        if case.find("failure") is not None or case.find("error") is not None:
            failed.add(name)
        elif case.find("skipped") is not None:
            unsupported.add(name)
        else:
            passed.add(name)
    summary = f"{len(passed)} passed, {len(failed)} failed ({sorted(failed)}), {len(unsupported)} unsupported"
    assert len(passed) + len(failed) + len(unsupported) == 378, done.stdout[-2000:]
    assert not unsupported, summary
    assert failed <= EXPECTED_FAILURES, summary
    assert len(passed) >= REQUIRED_PASSES, summary

#!/usr/bin/env python3
"""A cwl-runner that runs through a WES server, for cwltest: ``wes_cwl_runner.py [--outdir=D] WORKFLOW [JOB]``.

$WES_URL names the server (http://127.0.0.1:PORT) and $WES_TOKEN its token. The workflow goes up
packed into one document (its imports and tools inside) as the run's attachment; the job's
relative file locations are made absolute (the server is on this machine), as wes-client does.
The output object the server reports is printed, as a cwl-runner prints it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from typing import Any
from urllib.parse import urljoin
from urllib.request import pathname2url

import requests
import yaml


def absolute_locations(value: Any, base: str) -> Any:
    if isinstance(value, dict):
        value = {k: absolute_locations(v, base) for k, v in value.items()}
        for key in ("location", "path"):
            if key in value and isinstance(value[key], str) and ":" not in value[key].split("/", 1)[0]:
                value["location"] = urljoin(base, value.pop(key))
        return value
    if isinstance(value, list):
        return [absolute_locations(v, base) for v in value]
    return value


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outdir")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("workflow")
    parser.add_argument("job", nargs="?")
    args, _ = parser.parse_known_args()
    from cwltool.main import main as cwltool_main

    packed = io.StringIO()
    if cwltool_main(["--pack", args.workflow], stdout=packed) != 0:
        return 1
    params: dict[str, Any] = {}
    if args.job:
        with open(args.job) as handle:
            params = yaml.safe_load(handle) or {}
        base = "file://" + pathname2url(os.path.dirname(os.path.abspath(args.job))) + "/"
        params = absolute_locations(params, base)
    api = os.environ["WES_URL"] + "/ga4gh/wes/v1"
    headers = {"Authorization": f"Bearer {os.environ['WES_TOKEN']}"}
    version = yaml.safe_load(packed.getvalue()).get("cwlVersion", "v1.2")
    response = requests.post(f"{api}/runs", headers=headers, timeout=120, data={
        "workflow_url": "workflow.cwl", "workflow_type": "CWL", "workflow_type_version": version,
        "workflow_params": json.dumps(params)},
        files=[("workflow_attachment", ("workflow.cwl", packed.getvalue().encode()))])
    if response.status_code != 200:
        print(response.text, file=sys.stderr)
        return 1
    run_id = response.json()["run_id"]
    while (state := requests.get(f"{api}/runs/{run_id}/status", headers=headers, timeout=60).json()["state"]) in (
            "QUEUED", "INITIALIZING", "RUNNING"):
        time.sleep(0.5)
    log = requests.get(f"{api}/runs/{run_id}", headers=headers, timeout=60).json()
    print(requests.get(log["run_log"]["stderr"], headers=headers, timeout=60).text, file=sys.stderr)
    if state != "COMPLETE":
        return 1
    json.dump(log["outputs"], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

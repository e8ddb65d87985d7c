"""The "CWL conformance" section of RESULTS.md, from the JSON that ``benchmarks/cwl_conformance.py``
writes (``config.CWL_RESULTS``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import stats
from harness.machine import describe_text
from harness.report import Section, skipped, table

KEY = "cwl"
TITLE = "CWL conformance"
# Summed test times of the whole suite, measured on this machine when the issue was filed
# (cwltest -j2, --no-container): the baselines wherever a run did not measure that runner itself.
REFERENCE_S = {"toil": 4154.0, "cwltool": 723.0}
REFERENCE_LABELS = {"toil": "Toil 9.6", "cwltool": "cwltool"}


def _seconds(value: float) -> str:
    return f"{value:,.0f} s" if value >= 100 else f"{value:.1f} s"


def _measured(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [runner for runner in data["runners"] if runner["error"] is None]


def _baselines(data: dict[str, Any]) -> dict[str, tuple[float | None, str]]:
    """Per reference runner: the summed time to divide by (None: nothing comparable) and its label."""
    measured = {runner["name"]: runner for runner in _measured(data)}
    baselines = {}
    for name, reference in REFERENCE_S.items():
        label = REFERENCE_LABELS[name]
        if name in measured:
            seconds = measured[name]["summed_time_s"]
            baselines[name] = (seconds, f"{label} (this run: {_seconds(seconds)})")
        elif data["selection"] is None:
            baselines[name] = (reference, f"{label} (reference: {_seconds(reference)})")
        else:
            baselines[name] = (None, label)
    return baselines


def _ratios(runner: dict[str, Any], baselines: dict[str, tuple[float | None, str]]) -> list[str]:
    return [
        stats.fmt_ratio(None if name == runner["name"] else stats.ratio(runner["summed_time_s"], baseline))
        for name, (baseline, _) in baselines.items()
    ]


def summary(data: dict[str, Any]) -> list[str]:
    """A few lines for the terminal."""
    scope = "the whole suite" if data["selection"] is None else f"{data['selected']} of {data['suite_tests']} tests"
    lines = [f"CWL v1.2 conformance, {scope}, cwltest -j{data['jobs']}:"]
    baselines = _baselines(data)
    for runner in data["runners"]:
        if runner["error"] is not None:
            lines.append(f"  {runner['name']}: {runner['error']}")
            continue
        lines.append(
            f"  {runner['name']}: {runner['passed']}/{runner['total']} passed, {runner['failed']} failed, "
            f"{runner['unsupported']} unsupported; summed time {_seconds(runner['summed_time_s'])}, "
            f"wall {_seconds(runner['wall_s'])}"
        )
        compared = [
            f"vs {label}: {ratio}"
            for ratio, (_, label) in zip(_ratios(runner, baselines), baselines.values(), strict=True)
            if ratio != "-"
        ]
        if compared:
            lines.append(f"    {'; '.join(compared)}")
        if runner["failed_ids"]:
            lines.append(f"    failed: {', '.join(runner['failed_ids'])}")
        if runner.get("note"):
            lines.append(f"    note: {runner['note']}")
    return lines


# Why a test fails on this machine, where the cause is known (with containers unless said).
FAILURE_REASONS = {
    "networkaccess": "its tool fetches http://commonwl.org, and no network is reachable here",
    "filename_with_hash_mark": "cwltool's default strict path check rejects the input `item #1.txt`; "
    "it passes with `--relax-path-checks`",
    "docker_entrypoint": "it needs the image's ENTRYPOINT, which older bash:4.4 stand-ins lack",
    "iwd-fileobjs1": "in the run of 2026-12-02 only: a file that the tool's own InitialWorkDirRequirement names "
    "(staged as a link) was refused as an output linking outside the tool's directory; passes since the fix",
    "iwd-fileobjs2": "as iwd-fileobjs1",
    "cwloutput_nolimit": "with `--no-container`: its tool needs Docker, and in a `required` test cwltest counts "
    "an unsupported feature as a failure",
}
# Failures that only cwltool has.
CWLTOOL_REASONS = {
    "illegal_symlink": "cwltool retrieves the output link to a file outside the tool's directory (here it "
    "names a file of the host's /tmp)",
}


def _with_reason(test_id: str, runner: str, data: dict[str, Any]) -> str:
    reason = (CWLTOOL_REASONS.get(test_id) if runner == "cwltool" else None) or FAILURE_REASONS.get(test_id)
    if reason is None or (test_id == "cwloutput_nolimit" and data.get("containers", False)):
        return f"`{test_id}`"
    return f"`{test_id}` ({reason})"


def _container_text(data: dict[str, Any]) -> str:
    # A JSON written before containers were the default ran with --no-container.
    if not data.get("containers", False):
        return "runner option `--no-container`"
    return ("with containers: DockerRequirement in the machine's engine, `DOCKER_HOST` its Docker API "
            "socket")


def section(data: dict[str, Any]) -> Section:
    runners = _measured(data)
    selection = data["selection"]
    scope = (
        "The CWL v1.2 conformance suite"
        if selection is None
        else f"{data['selected']} of the {data['suite_tests']} tests of the CWL v1.2 conformance suite (`{selection}`)"
    )
    lines = [
        f"{scope}, run by cwltest {data['cwltest_version']} (`-j{data['jobs']}`, {_container_text(data)}) "
        f"on {data['date']}: `{data['command']}`. "
        f"Machine: {describe_text(data['machine'])}.",
        "",
    ]
    if any(runner.get("warm_local_ray") for runner in runners):
        lines += [
            "toilray ran warm: a local Ray instance (`python -m toilray local-ray start`, a private "
            "`TOILRAY_HOME`, `RAY_ADDRESS` unset) was up for its whole cwltest run, and each test's "
            "`toilray-cwl-runner` connected to it instead of starting Ray.",
            "",
        ]
    references = ", ".join(f"{REFERENCE_LABELS[name]}: {_seconds(seconds)}" for name, seconds in REFERENCE_S.items())
    lines += [
        "*Summed time*: the test times in cwltest's JUnit report added up (each test is one runner "
        f"process, end to end); *wall*: the whole cwltest run, {data['jobs']} tests at a time. "
        "*vs Toil 9.6*, *vs cwltool*: the runner's summed time divided by theirs (below 1x: faster). The reference "
        f"times ({references}; the whole suite, summed) were measured on this machine when the issue was filed; "
        "they stand in for a runner this run did not measure"
        + (", and only for runs of the whole suite." if selection is not None else "."),
        "",
    ]
    baselines = _baselines(data)
    rows = [
        [
            runner["name"],
            runner["version"],
            *(str(runner[key]) for key in ("passed", "failed", "unsupported", "total")),
            _seconds(runner["summed_time_s"]),
            _seconds(runner["wall_s"]),
            *_ratios(runner, baselines),
        ]
        for runner in runners
    ]
    headers = ["runner", "version", "passed", "failed", "unsupported", "total", "summed time", "wall"]
    lines += table([*headers, *(f"vs {label}" for _, label in baselines.values())], rows) if rows else []
    for runner in data["runners"]:
        if runner["error"] is not None:
            lines += [f"{runner['name']}: {runner['error']}", ""]
        elif runner.get("note"):
            lines += [f"{runner['name']}: {runner['note']}", ""]
    if not runners:
        return Section(KEY, TITLE, lines)
    tags = sorted(
        {tag for runner in runners for tag in runner["tags"]},
        key=lambda tag: (-max(r["tags"].get(tag, {"total": 0})["total"] for r in runners), tag),
    )
    tag_rows = []
    for tag in tags:
        cells = []
        for runner in runners:
            counts = runner["tags"].get(tag)
            cells.append(f"{counts['passed']}/{counts['total']}" if counts else "-")
        tag_rows.append([tag, *cells])
    lines += ["Passed per tag (passed/total):", "", *table(["tag", *(r["name"] for r in runners)], tag_rows)]
    for runner in runners:
        for what, key in (("Failed", "failed_ids"), ("Unsupported", "unsupported_ids")):
            ids = runner[key]
            if ids or what == "Failed":
                shown = ", ".join(_with_reason(test_id, runner["name"], data) for test_id in ids) or "none"
                lines += [f"{what} ({runner['name']}, {len(ids)}): {shown}", ""]
    return Section(KEY, TITLE, lines)


def load(path: Path) -> Section | None:
    """The section from ``path``; None when there is no such file."""
    if not path.exists():
        return None
    try:
        return section(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # A broken file must not cost the page the other benchmarks just measured.
        return skipped(KEY, TITLE, f"{path} could not be read: {type(exc).__name__}: {exc}")

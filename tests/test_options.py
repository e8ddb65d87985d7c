"""Toil's workflow options as toilray parses them, and the resolved ``Config``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from toilray.common import Config
from toilray.exceptions import BadOptionError
from toilray.job import Job
from toilray.requirements import Requirements


def parse(*args: str) -> argparse.Namespace:
    return Job.Runner.getDefaultArgumentParser().parse_args(list(args))


def rejected(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Parse a command line that must be refused; the one-line error argparse printed."""
    with pytest.raises(SystemExit) as exit_info:
        parse(*args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1, err
    return error_lines[0]


# -- defaults -----------------------------------------------------------------------------------


def test_default_options_are_toils() -> None:
    options = Job.Runner.getDefaultOptions("file:x")
    assert options.jobStore == "file:x"
    assert options.retryCount == 1
    assert options.clean is None
    assert options.cleanWorkDir == "always"
    assert options.stats is False
    assert options.restart is False
    assert options.logLevel == "INFO"
    assert options.defaultMemory == 2147483648
    assert options.defaultDisk == 2147483648
    assert options.defaultCores == 1
    assert options.defaultPreemptible is False
    assert options.maxLogFileSize == 64000
    assert options.badWorker == 0.0
    assert options.badWorkerFailInterval == 0.01
    assert options.deadlockWait == 60
    assert options.deadlockCheckInterval == 30
    assert options.statusWait == 3600
    assert options.disableChaining is False
    assert options.setEnv == []
    assert options.batchSystem in ("ray", "single_machine")
    assert options.provisioner is None


def test_default_config() -> None:
    config = Config.from_options(Job.Runner.getDefaultOptions("file:x"))
    assert config.clean == "onSuccess"
    assert config.cleanWorkDir == "always"
    assert config.retryCount == 1
    assert config.logLevel == "INFO"
    assert config.defaults == Requirements(cores=1.0, memory=2 * 2**30, disk=2 * 2**30, accelerators=(),
                                           preemptible=False)
    assert config.env == {}
    assert config.maxLogFileSize == 64000  # unresolved options read through
    assert config.jobStoreLocator.startswith("file:/")


def test_default_options_need_a_job_store() -> None:
    with pytest.raises(ValueError):
        Job.Runner.getDefaultOptions()
    assert Job.Runner.getDefaultOptions(jobstore_as_flag=True).jobStore is None
    assert Job.Runner.getDefaultOptions("file:y", jobstore_as_flag=True).jobStore == "file:y"


# -- --clean and --stats ------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [("ALWAYS", "always"), ("always", "always"),
                                                 ("onerror", "onError"), ("NEVER", "never"),
                                                 ("OnSuccess", "onSuccess")])
def test_clean_is_case_insensitive(given: str, expected: str) -> None:
    assert parse("--clean", given, "file:x").clean == expected
    assert Config.from_options(parse("--clean", given, "file:x")).clean == expected


def test_clean_rejects_unknown_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--clean" in rejected(capsys, "--clean", "sometimes", "file:x")


def test_clean_set_in_code_is_normalised() -> None:
    options = Job.Runner.getDefaultOptions("file:x")
    options.clean = "ALWAYS"
    assert Config.from_options(options).clean == "always"
    options.clean = "bogus"
    with pytest.raises(BadOptionError):
        Config.from_options(options)


def test_stats_keeps_the_job_store_even_with_clean_always() -> None:
    assert Config.from_options(parse("--stats", "file:x")).clean == "never"
    assert Config.from_options(parse("--stats", "--clean", "always", "file:x")).clean == "never"
    options = Job.Runner.getDefaultOptions("file:x")
    options.stats = True
    options.clean = "always"
    assert Config.from_options(options).clean == "never"
    assert Config.from_options(parse("--clean", "always", "file:x")).clean == "always"


# -- logging --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "level"),
    [
        (["--logOff"], "CRITICAL"),
        (["--logCritical"], "CRITICAL"),
        (["--logError"], "ERROR"),
        (["--logWarning"], "WARNING"),
        (["--logInfo"], "INFO"),
        (["--logDebug"], "DEBUG"),
        (["--logLevel=critical"], "CRITICAL"),
        (["--logLevel", "debug"], "DEBUG"),
        (["--logLevel", "WARN"], "WARNING"),
        (["--logLevel=off"], "CRITICAL"),
        ([], "INFO"),
    ],
)
def test_log_levels(args: list[str], level: str) -> None:
    options = parse(*args, "file:x")
    assert options.logLevel.upper() == level
    assert Config.from_options(options).logLevel == level


def test_log_level_set_in_code() -> None:
    options = Job.Runner.getDefaultOptions("file:x")
    options.logLevel = "debug"
    assert Config.from_options(options).logLevel == "DEBUG"
    options.logLevel = "chatty"
    with pytest.raises(BadOptionError):
        Config.from_options(options)


def test_unknown_log_level_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--logLevel" in rejected(capsys, "--logLevel", "loud", "file:x")


# -- options of replaced batch systems and provisioners -------------------------------------------------


@pytest.mark.parametrize(
    ("args", "option", "instead"),
    [
        (["--provisioner", "aws"], "--provisioner", "Ray autoscaler"),
        (["--nodeTypes", "x"], "--nodeTypes", "Ray cluster configuration"),
        (["--mesosEndpoint", "h:1"], "--mesosEndpoint", "--rayAddress"),
        (["--kubernetesOwner", "me"], "--kubernetesOwner", "--rayAddress"),
        (["--awsBatchQueue", "q"], "--awsBatchQueue", "ray up"),
        (["--batchSystem", "torque"], "--batchSystem", "--rayAddress"),
        (["--batchSystem", "mesos"], "--batchSystem", "Ray"),
        (["--batchSystem", "kubernetes"], "--batchSystem", "Ray"),
    ],
)
def test_replaced_options_stop_with_what_toilray_does_instead(
    capsys: pytest.CaptureFixture[str], args: list[str], option: str, instead: str
) -> None:
    line = rejected(capsys, "file:x", *args)
    assert option in line
    assert instead in line
    assert "toilray" in line


def test_replaced_options_are_not_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("--help")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--retryCount" in out
    assert "--provisioner" not in out
    assert "--mesosEndpoint" not in out


@pytest.mark.parametrize("name", ["single_machine", "ray"])
def test_supported_batch_systems_are_accepted(name: str) -> None:
    assert parse("--batchSystem", name, "file:x").batchSystem == name


def test_hpc_batch_systems_take_toils_scheduler_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOIL_SLURM_ARGS", "--account=lab")
    config = Config.from_options(parse("file:x", "--batchSystem", "slurm", "--maxNodes", "4", "--nodeCores", "8",
                                       "--nodeMemory", "16G", "--nodeAccelerators", "2", "--slurmPartition", "gpu",
                                       "--slurmTime", "4:00:00", "--slurmQOS", "high", "--slurmArgs=--exclusive",
                                       "--nodeIdleTime", "30", "--statePollingWait", "5"))
    elastic = config.elastic
    assert elastic is not None
    assert (elastic.scheduler, elastic.max_nodes, elastic.idle_time, elastic.polling) == ("slurm", 4, 30.0, 5.0)
    assert (elastic.shape.cpus, elastic.shape.memory, elastic.shape.gpus) == (8, 16 * 10**9, 2)
    assert (elastic.queue, elastic.time, elastic.qos) == ("gpu", "4:00:00", "high")
    assert elastic.extra_args == ("--account=lab", "--exclusive")
    monkeypatch.setenv("TOIL_GRIDENGINE_PE", "mpi")
    grid = Config.from_options(parse("file:x", "--batchSystem", "gridengine")).elastic
    assert grid is not None and (grid.scheduler, grid.parallel_environment) == ("grid_engine", "mpi")
    assert Config.from_options(parse("file:x")).elastic is None
    for args, problem in ((["--maxNodes", "3"], "--maxNodes is for --batchSystem slurm"),
                          (["--batchSystem", "lsf", "--slurmArgs=-x"], "--slurmArgs is for Slurm"),
                          (["--batchSystem", "slurm", "--rayAddress", "h:1"], "conflict")):
        with pytest.raises(BadOptionError, match=problem):
            Config.from_options(parse("file:x", *args))


@pytest.mark.parametrize(("name", "value"), [("provisioner", "aws"), ("nodeTypes", ["t2.micro"]),
                                             ("mesosEndpoint", "h:1"), ("metrics", True)])
def test_replaced_options_set_in_code_are_rejected(name: str, value: object) -> None:
    options = Job.Runner.getDefaultOptions("file:x")
    setattr(options, name, value)
    with pytest.raises(BadOptionError, match=name):
        Config.from_options(options)


@pytest.mark.parametrize(("name", "value"), [("targetTime", 1), ("betaInertia", 0.5), ("scaleInterval", 30)])
def test_tuning_options_set_in_code_are_accepted_and_noted(name: str, value: object) -> None:
    options = Job.Runner.getDefaultOptions("file:x")
    setattr(options, name, value)
    assert Config.from_options(options).ignoredOptions == (name,)


@pytest.mark.parametrize("name", ["torque", "mesos"])
def test_replaced_batch_system_set_in_code_is_rejected(name: str) -> None:
    options = Job.Runner.getDefaultOptions("file:x")
    options.batchSystem = name
    with pytest.raises(BadOptionError):
        Config.from_options(options)


# -- resources ------------------------------------------------------------------------------------


def test_resource_defaults_from_the_command_line() -> None:
    config = Config.from_options(parse("--defaultMemory", "1Gi", "--defaultDisk", "3G", "--defaultCores", "0.5",
                          "--defaultAccelerators", "nvidia:1", "--defaultPreemptible", "--maxMemory", "8G",
                          "file:x"))
    assert config.defaults == Requirements(cores=0.5, memory=2**30, disk=3 * 10**9,
                                           accelerators=({"count": 1, "kind": "gpu", "brand": "nvidia"},),
                                           preemptible=True)
    assert config.maxMemory == 8 * 10**9


def test_bad_sizes_are_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--defaultMemory" in rejected(capsys, "--defaultMemory", "lots", "file:x")


def test_sizes_set_in_code_are_parsed_like_toil() -> None:
    options = Job.Runner.getDefaultOptions("file:x")
    options.defaultMemory = "4G"
    options.defaultDisk = "1Gi"
    options.maxMemory = "10G"
    config = Config.from_options(options)
    assert config.defaults.memory == 4 * 10**9
    assert config.defaults.disk == 2**30
    assert config.maxMemory == 10 * 10**9


def test_retry_count_and_negative_values() -> None:
    assert Config.from_options(parse("--retryCount", "3", "file:x")).retryCount == 3
    with pytest.raises(BadOptionError):
        Config.from_options(parse("--retryCount", "-1", "file:x"))
    with pytest.raises(BadOptionError):
        Config.from_options(parse("--scale", "0", "file:x"))


def test_bad_worker_must_be_a_fraction(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse("--badWorker", "0.5", "file:x").badWorker == 0.5
    assert "--badWorker" in rejected(capsys, "--badWorker", "1.5", "file:x")


# -- --setEnv -----------------------------------------------------------------------------------


def test_set_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("B", "from-environ")
    monkeypatch.delenv("MISSING_VAR_FOR_TEST", raising=False)
    options = parse("--setEnv", "A=1", "-e", "B", "-e", "C=x=y", "-e", "MISSING_VAR_FOR_TEST", "file:x")
    assert options.setEnv == ["A=1", "B", "C=x=y", "MISSING_VAR_FOR_TEST"]
    assert Config.from_options(options).env == {"A": "1", "B": "from-environ", "C": "x=y"}


def test_set_env_needs_a_name() -> None:
    with pytest.raises(BadOptionError):
        Config.from_options(parse("--setEnv", "=1", "file:x"))


# -- parsers -------------------------------------------------------------------------------------


def test_add_toil_options_to_a_fresh_parser() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--myOwn", default="mine")
    Job.Runner.addToilOptions(parser)
    options = parser.parse_args(["file:x", "--retryCount", "4", "--myOwn", "yours"])
    assert (options.jobStore, options.retryCount, options.myOwn) == ("file:x", 4, "yours")
    assert Config.from_options(options).retryCount == 4


def test_default_options_take_the_job_store_as_a_keyword_or_any_path(tmp_path: Path) -> None:
    assert Job.Runner.getDefaultOptions(jobStore="file:kw").jobStore == "file:kw"
    options = Job.Runner.getDefaultOptions(tmp_path / "store")
    assert options.jobStore == str(tmp_path / "store")
    assert Config.from_options(options).jobStoreLocator == f"file:{tmp_path}/store"
    options.jobStore = tmp_path / "other"  # a pipeline may set a Path after parsing, too
    assert Config.from_options(options).jobStoreLocator == f"file:{tmp_path}/other"


def test_job_store_as_flag(capsys: pytest.CaptureFixture[str]) -> None:
    parser = Job.Runner.getDefaultArgumentParser(jobstore_as_flag=True)
    assert parser.parse_args(["--jobStore", "file:z"]).jobStore == "file:z"
    assert parser.parse_args([]).jobStore is None
    fresh = argparse.ArgumentParser()
    Job.Runner.addToilOptions(fresh, jobstore_as_flag=True)
    assert fresh.parse_args(["--jobStore", "file:w"]).jobStore == "file:w"
    with pytest.raises(SystemExit):
        fresh.parse_args(["file:w"])  # no positional job store in this mode
    capsys.readouterr()


def test_positional_job_store_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert "jobStore" in rejected(capsys)


def test_config_needs_a_job_store() -> None:
    options = Job.Runner.getDefaultOptions(jobstore_as_flag=True)
    with pytest.raises(BadOptionError):
        Config.from_options(options)


def test_relative_file_store_becomes_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(str(tmp_path))
    config = Config.from_options(parse("my-store"))
    assert config.jobStore == "my-store"
    assert config.jobStoreLocator == f"file:{tmp_path}/my-store"


def test_work_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(BadOptionError):
        Config.from_options(parse("--workDir", f"{tmp_path}/does-not-exist", "file:x"))
    assert Config.from_options(parse("--workDir", str(tmp_path), "file:x")).workDir == str(tmp_path)


def test_script_style_parse_of_sys_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["script.py", "file:s", "--clean=ALWAYS", "--logDebug"])
    options = Job.Runner.getDefaultArgumentParser().parse_args()
    config = Config.from_options(options)
    assert (config.clean, config.logLevel, config.jobStore) == ("always", "DEBUG", "file:s")

"""What every scenario gets: sizes, engines, scratch directories, and running with repetitions."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.config import Sizes
from harness.local_ray import LocalRay
from harness.process import RunOutcome, run_process
from harness.toolchain import Engine


@dataclass
class Context:
    sizes: Sizes
    repetitions: int
    workdir: Path
    engines: dict[str, Engine]
    timeout_s: float
    keep: bool
    log: Callable[[str], None]
    failures: list[str] = field(default_factory=list)
    fanout_runs: dict[int, dict[str, list[RunOutcome]]] = field(default_factory=dict)
    _dirs: int = 0

    # -- engines -----------------------------------------------------------------------------

    def usable(self, names: list[str]) -> list[str]:
        return [n for n in names if n in self.engines and self.engines[n].unavailable is None]

    def unusable(self, names: list[str]) -> dict[str, str]:
        """Engines asked for that cannot run, with the reason (engines not selected: omitted)."""
        return {
            n: self.engines[n].unavailable or ""
            for n in names
            if n in self.engines and self.engines[n].unavailable is not None
        }

    # -- directories -------------------------------------------------------------------------

    @contextlib.contextmanager
    def scratch(self, label: str) -> Iterator[Path]:
        """A fresh directory for one run (or one kill-and-restart pair), removed afterwards."""
        self._dirs += 1
        slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")
        path = self.workdir / "runs" / f"{self._dirs:04d}-{slug}"
        path.mkdir(parents=True)
        try:
            yield path
        finally:
            if not self.keep:
                shutil.rmtree(path, ignore_errors=True)

    def input_path(self, name: str) -> Path:
        path = self.workdir / "inputs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # -- running -----------------------------------------------------------------------------

    def finish(self, outcome: RunOutcome) -> RunOutcome:
        """Log a finished run and remember its failure for RESULTS.md."""
        if outcome.killed:
            self.log(f"{outcome.label}: killed as planned after {outcome.e2e_s:.2f} s")
        elif outcome.ok:
            inner = f", in workflow {outcome.inner_s:.2f} s" if outcome.inner_s is not None else ""
            self.log(f"{outcome.label}: {outcome.e2e_s:.2f} s end to end{inner}")
        else:
            first = (outcome.error or "").splitlines()[0] if outcome.error else "failed"
            self.log(f"{outcome.label}: FAILED ({first})")
            self.failures.append(f"{outcome.label}: {outcome.error}")
        return outcome

    def fail(self, outcome: RunOutcome, why: str) -> RunOutcome:
        """Mark a run that exited cleanly but produced a wrong result as failed."""
        outcome.ok = False
        outcome.error = why
        return outcome

    def run_workflow(
        self,
        engine: str,
        script: str,
        args: list[str],
        label: str,
        directory: Path,
        clean: str = "always",
        stop_when: Callable[[], bool] | None = None,
        job_store: Path | None = None,
    ) -> RunOutcome:
        """Run a Toil workflow script under ``engine`` with its job store in ``directory``."""
        runner = self.engines[engine]
        directory.mkdir(parents=True, exist_ok=True)
        work = directory / "work"
        work.mkdir(exist_ok=True)
        store = job_store or directory / "store"
        argv = runner.workflow_command(script, store, work, clean, args)
        return run_process(
            argv,
            label=label,
            engine=engine,
            env=runner.env,
            cwd=directory,
            timeout_s=self.timeout_s,
            stop_when=stop_when,
        )

    def run_command(
        self, engine: str, argv: list[str], label: str, directory: Path, expect_record: bool = True
    ) -> RunOutcome:
        """Run any command with ``engine``'s environment (the harness's own for a non-engine)."""
        directory.mkdir(parents=True, exist_ok=True)
        env = self.engines[engine].env if engine in self.engines else dict(os.environ)
        return run_process(
            argv,
            label=label,
            engine=engine,
            env=env,
            cwd=directory,
            timeout_s=self.timeout_s,
            expect_record=expect_record,
        )

    def repeat(
        self, names: list[str], run_one: Callable[[str, int], RunOutcome]
    ) -> dict[str, list[RunOutcome]]:
        """``repetitions`` runs of each engine, alternating: the order rotates every repetition.

        When an engine needs a local Ray instance (toilray-warm), one is started before the
        first run and stopped after the last, whatever happens in between."""
        results: dict[str, list[RunOutcome]] = {name: [] for name in names}
        with self._local_ray(names) as instance:
            for rep in range(self.repetitions):
                shift = rep % len(names) if names else 0
                for name in names[shift:] + names[:shift]:
                    engine = self.engines.get(name)
                    if instance is not None and engine is not None and engine.local_ray_home is not None:
                        outcome = self._run_warm(instance, name, rep, run_one)
                    else:
                        outcome = run_one(name, rep)
                    results[name].append(self.finish(outcome))
        return results

    @contextlib.contextmanager
    def _local_ray(self, names: list[str]) -> Iterator[LocalRay | None]:
        """The local Ray instance of the engine in ``names`` that needs one (None: none does)."""
        warm = [e for n in names if (e := self.engines.get(n)) is not None and e.local_ray_home is not None]
        if not warm:
            yield None
            return
        with LocalRay(warm[0].python, warm[0].local_ray_home, warm[0].env, self.log).running() as instance:
            yield instance

    def _run_warm(
        self, instance: LocalRay, name: str, rep: int, run_one: Callable[[str, int], RunOutcome]
    ) -> RunOutcome:
        """One run on the local instance: never without it (the run would start its own Ray),
        so a dead instance is restarted first, and a run after which it is gone has failed."""
        if not instance.alive() and not instance.start():
            return RunOutcome(
                label=f"{name} repetition {rep + 1}",
                engine=name,
                ok=False,
                e2e_s=0.0,
                error=f"not run: the local Ray instance could not be started: {instance.error}",
            )
        outcome = run_one(name, rep)
        if not instance.alive():
            why = "the local Ray instance was gone after this run (the run may have started Ray itself)"
            if outcome.ok:
                self.fail(outcome, why)
            else:
                outcome.error = f"{outcome.error}\n{why}"
        return outcome

"""Run the toilray benchmarks and write benchmarks/RESULTS.md: ``python benchmarks/run.py --help``.

Needs an interpreter with toilray installed; when this one lacks it, the repository's
``.venv`` is used instead. Toil runs from ``benchmarks/.venv-toil``, created on first use.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_PYTHON = HERE.parent / ".venv" / "bin" / "python"

if __name__ == "__main__":
    if (
        importlib.util.find_spec("toilray") is None
        and REPO_PYTHON.exists()
        and Path(sys.executable) != REPO_PYTHON
    ):
        os.execv(str(REPO_PYTHON), [str(REPO_PYTHON), __file__, *sys.argv[1:]])
    sys.path.insert(0, str(HERE))
    from harness.cli import main

    sys.exit(main())

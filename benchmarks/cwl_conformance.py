"""Measure the CWL v1.2 conformance suite for CWL runners: ``python benchmarks/cwl_conformance.py --help``.

Writes benchmarks/cwl-conformance.json, which the "CWL conformance" section of RESULTS.md shows.
Needs an interpreter with cwltest and toilray; when this one lacks them, the repository's ``.venv`` is used instead.
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
        any(importlib.util.find_spec(name) is None for name in ("cwltest", "psutil", "toilray"))
        and REPO_PYTHON.exists()
        and Path(sys.executable) != REPO_PYTHON
    ):
        os.execv(str(REPO_PYTHON), [str(REPO_PYTHON), __file__, *sys.argv[1:]])
    sys.path.insert(0, str(HERE))
    from harness.cwl_cli import main

    sys.exit(main())

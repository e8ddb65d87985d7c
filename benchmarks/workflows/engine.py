"""The one place a workflow learns whose Toil API it runs on.

``BENCH_ENGINE=toil`` imports Toil itself; anything else imports toilray. The workflow
scripts import ``Job`` and ``Toil`` from here and are otherwise plain Toil scripts, which is
the migration story: only the import lines differ between the two engines.
"""

from __future__ import annotations

import os

ENGINE = "toil" if os.environ.get("BENCH_ENGINE") == "toil" else "toilray"

if ENGINE == "toil":
    from toil.common import Toil
    from toil.job import Job
else:
    from toilray.common import Toil
    from toilray.job import Job

__all__ = ["ENGINE", "Job", "Toil"]

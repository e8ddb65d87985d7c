"""``toilray server``: a GA4GH Workflow Execution Service (WES 1.1) that runs workflows on Ray.

Modules, in the direction of their dependencies: ``state`` (the SQLite record of every run),
``attachments`` (writing uploaded files inside a run's directory, and nowhere else),
``cwl_leader`` (a CWL run's leader process: the runner, its output object kept in a file),
``runs`` (starting, supervising, cancelling and recovering runs), ``models`` (the WES schema),
``page`` (the page at ``/``), ``app`` (the HTTP API and its authentication).
"""

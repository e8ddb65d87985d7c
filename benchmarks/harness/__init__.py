"""The benchmark harness: runs the workflows in ``benchmarks/workflows`` under Toil, toilray
and plain Ray, and writes ``benchmarks/RESULTS.md``."""

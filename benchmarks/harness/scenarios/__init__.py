"""One module per scenario of the benchmark issue; each has ``run(ctx) -> Section``."""

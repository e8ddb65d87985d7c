"""A workflow laid out as a package, run with ``python -m flowpkg.main``."""

"""Storage back ends for the job store."""

"""Load benchmarks: ``make bench``."""

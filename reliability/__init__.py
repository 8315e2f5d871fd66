"""Reliability scripts: correctness under load, fuzzing, overload, soak; each prints figures."""

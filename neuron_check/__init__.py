"""make neuron-check: prove an inf2 instance from a fresh clone (``python -m neuron_check``)."""

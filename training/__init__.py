"""Offline training of the house-price MLP: ``python -m training``."""

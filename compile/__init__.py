"""Compile the trained model into ``model_neuron.pt``: ``python -m compile``."""

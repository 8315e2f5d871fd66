"""The model contract shared by training, compile and serving: features, network, manifest."""

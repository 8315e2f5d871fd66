"""Device backends: one file per device, all with the ``Backend`` interface of ``base``."""

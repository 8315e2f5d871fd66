"""``python -m app.probe``: the container health check of both doors (``app.process.probe``,
kept here for its name: images and orchestrators call it)."""

import sys

from app.process.probe import main

if __name__ == "__main__":
    sys.exit(main())

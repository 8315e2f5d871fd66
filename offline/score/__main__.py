"""``python -m offline.score`` (also ``python -m app.score``): ``offline.score.cli``."""

import sys

from offline.score.cli import main

if __name__ == "__main__":
    sys.exit(main())

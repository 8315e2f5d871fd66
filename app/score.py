"""``python -m app.score``: score files offline (``offline.score``, kept here for its name)."""

import sys

from offline.score.cli import main

if __name__ == "__main__":
    sys.exit(main())

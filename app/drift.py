"""``python -m app.drift``: compare captured traffic with the training data (``offline.drift``,
kept here for its name)."""

import sys

from offline.drift import main

if __name__ == "__main__":
    sys.exit(main())

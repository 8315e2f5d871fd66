"""``python -m app``: serve the model (``app.process.cli``; ``--help`` lists every setting)."""

import sys

from app.process.cli import command_line

if __name__ == "__main__":
    sys.exit(command_line(sys.argv[1:]))

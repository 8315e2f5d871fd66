"""The real server process helper lives with the reliability scripts, which use it too."""

from reliability.server import ServerProcess, serve

__all__ = ["ServerProcess", "serve"]

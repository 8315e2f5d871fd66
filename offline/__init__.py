"""Offline tools on the served artifact, outside the server: file scoring (``score``) and
drift reports on captured traffic (``drift``)."""

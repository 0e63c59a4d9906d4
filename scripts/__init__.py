"""Maintenance scripts (run as `python scripts/NAME.py`); a package so that tests can share their helpers."""

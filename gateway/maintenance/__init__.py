"""Maintenance plans due by real usage, and their audit log."""
